"""docs/configuration.md's tables and `.env.example`, rendered from app/config.py (issue 16).

Both used to be written by hand and drifted from the code ("commented lines show the default"
showed values the code did not have). Now the fields' defaults and descriptions are the one
source; `make settings-docs` (`python -m app.settings_reference --write`) writes both files and
tests/test_settings_reference.py fails while either differs from this rendering.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from app.config import SECTIONS, Section, Settings
from app.startup_checks import EXAMPLE_ADMIN_KEY, EXAMPLE_ENCRYPTION_KEY

REPO = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ".env.example"
CONFIGURATION_PAGE = "docs/configuration.md"
WIDTH = 100


@dataclass(frozen=True)
class Placeholder:
    """A value `.env.example` sets (uncommented) so `cp .env.example .env` gives a stack that
    starts, and what to do about it."""

    value: str
    note: str = ""


@dataclass(frozen=True)
class Variable:
    """A variable that is not a field of `Settings`: compose's, or one read by other code."""

    name: str
    default: str | None  # None: required (compose's `${NAME:?...}`)
    description: str
    docs_default: str = ""
    example: Placeholder | None = None
    in_env_example: bool = True


#: Settings whose example value stays uncommented: a stack needs them to start.
EXAMPLE_SETTINGS: dict[str, Placeholder] = {
    "DUALMCP_API_KEYS": Placeholder(
        f"admin:{EXAMPLE_ADMIN_KEY}",
        "REPLACE the example's key: the roles warn loudly while it is in use.",
    ),
    "DUALMCP_ENCRYPTION_KEY": Placeholder(
        EXAMPLE_ENCRYPTION_KEY,
        "REPLACE this example's key: it is published with the code.",
    ),
}

#: What docker-compose.yml interpolates (`${NAME:-default}`); the app's code reads none of them.
COMPOSE_ONLY: tuple[Variable, ...] = (
    Variable(
        "POSTGRES_USER",
        "dualmcp",
        "the PostgreSQL user; `DATABASE_URL` is built from these three",
        example=Placeholder("dualmcp"),
    ),
    Variable(
        "POSTGRES_PASSWORD",
        None,
        "its password (URL-safe: letters, digits); compose refuses to start without it",
        example=Placeholder("change-me-to-a-long-random-password", "REPLACE it."),
    ),
    Variable("POSTGRES_DB", "dualmcp", "the database", example=Placeholder("dualmcp")),
    Variable(
        "DUALMCP_IMAGE",
        "dualmcp:latest",
        "the image every app service runs (set it to a new tag to upgrade)",
    ),
    Variable(
        "DUALMCP_ENV_FILE",
        ".env",
        "the file the app services take their environment from",
        in_env_example=False,
    ),
    Variable("DUALMCP_WEB_BIND", "0.0.0.0", "the address the web's port is published on"),
    Variable("DUALMCP_WEB_PORT", "8000", "the port the web is published on"),
    Variable("WEB_CONCURRENCY", "4", "gunicorn processes of `web` (4 threads each)"),
    Variable(
        "DUALMCP_WORKER_CONCURRENCY", "4", "processes per `worker` container (workflow nodes)"
    ),
    Variable(
        "DUALMCP_AGENT_WORKER_CONCURRENCY", "4", "processes per `agents` container (agent turns)"
    ),
    Variable(
        "DUALMCP_IO_WORKER_CONCURRENCY",
        "100",
        "threads of the one process per `worker-io` container: nodes on `dualmcp.slow` (LLM, "
        "agent, HTTP) in flight at once",
    ),
    Variable(
        "DUALMCP_IO_DB_POOL_SIZE",
        "10",
        "`DUALMCP_DB_POOL_SIZE` of `worker-io` (its threads hold a connection only to claim and "
        "complete)",
    ),
    Variable(
        "DUALMCP_IO_STOP_GRACE_PERIOD",
        "90s",
        "Docker's SIGKILL deadline for a `worker-io`: keep it above "
        "`DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S` + 30 s",
    ),
    Variable(
        "DUALMCP_STOP_GRACE_PERIOD",
        "90s",
        "Docker's SIGKILL deadline for a `worker`: keep it above "
        "`DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S` + 30 s",
    ),
    Variable(
        "DUALMCP_AGENT_STOP_GRACE_PERIOD",
        "180s",
        "the same for `agents`: keep it above `DUALMCP_AGENT_TURN_DEADLINE_S` + "
        "`DUALMCP_LLM_TIMEOUT_S`",
    ),
    Variable(
        "REDIS_MAXMEMORY",
        "1gb",
        "Redis' memory limit (`noeviction`: when full, publishing fails and the node waits in "
        "PostgreSQL)",
    ),
    Variable(
        "FLOWER_BASIC_AUTH",
        None,
        "the `user:password` Flower asks for (compose refuses to start without it)",
        example=Placeholder("flower:change-me-flower-password", "REPLACE it."),
    ),
    Variable(
        "FLOWER_BIND",
        "127.0.0.1",
        "the address Flower is published on (put TLS in front before widening it)",
    ),
    Variable("FLOWER_PORT", "5555", "Flower's port"),
)

#: Variables read by other code than `Settings`, shown in the docs' table under their section.
READ_ELSEWHERE: dict[str, tuple[Variable, ...]] = {
    "operations": (
        Variable(
            "PROMETHEUS_MULTIPROC_DIR",
            None,
            "where gunicorn workers and Celery's prefork children add up their metrics; one "
            "directory per container, emptied at start (read by prometheus_client)",
            docs_default="(unset; `/tmp/dualmcp-metrics` in the image)",
        ),
        Variable(
            "DUALMCP_ROLE",
            "web",
            "what `dualmcp healthcheck` (the image's HEALTHCHECK) checks: `web`, `worker` or "
            "`beat`; compose and the Kubernetes manifests set it",
        ),
    ),
}


# --- one field --------------------------------------------------------------------------------


def env_name(field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    if not isinstance(alias, str):
        raise ValueError(f"{field!r} names no environment variable")
    return alias


def env_default(field: FieldInfo) -> str:
    """The default as `.env` would spell it: what leaving the line commented gives."""
    value = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def docs_default(field: FieldInfo) -> str:
    """The docs' default column: the code's default, or the field's `docs_default`, which
    explains an empty default or annotates a real one (and must then begin with it)."""
    value = env_default(field)
    shown = value if isinstance(field.default, int | float) else f"`{value}`" if value else ""
    extra = field.json_schema_extra
    override = extra.get("docs_default") if isinstance(extra, dict) else None
    if override is None:
        return shown or "(empty)"
    if not isinstance(override, str) or not override.startswith(shown or "("):
        raise ValueError(
            f"{env_name(field)}: docs_default {override!r} must begin with the default "
            f"{shown or '(...)'}: a changed default would go unnoticed otherwise"
        )
    return override


def description(field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"{env_name(field)} has no description in app/config.py")
    return " ".join(field.description.split())


def sectioned_fields(
    settings: type[Settings] = Settings, sections: Sequence[Section] = SECTIONS
) -> list[tuple[Section, list[FieldInfo]]]:
    """Every field under its section, each exactly once, in the sections' order."""
    fields = settings.model_fields
    listed = [name for section in sections for name in section.fields]
    doubled = sorted({name for name in listed if listed.count(name) > 1})
    missing = sorted(set(fields) - set(listed))
    unknown = sorted(set(listed) - set(fields))
    if doubled or missing or unknown:
        raise ValueError(
            f"app/config.py SECTIONS: in two sections {doubled}, in none {missing}, "
            f"not a field {unknown}"
        )
    return [(section, [fields[name] for name in section.fields]) for section in sections]


# --- .env.example -----------------------------------------------------------------------------

_ENV_HEADER = """\
# Dual MCP settings: `cp .env.example .env`, then edit. docker-compose.yml reads this file twice:
# for ${...} in the compose file, and as the environment of web, worker, beat and migrate.
# Every variable is described in docs/configuration.md. Commented lines show the default.
# Generated from app/config.py by `make settings-docs`: edit the settings there, not here.
"""


def _comment(text: str) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent="# ",
        subsequent_indent="# ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _rule(title: str) -> str:
    return f"# --- {title} ".ljust(WIDTH, "-")


def _entry(name: str, text: str, default: str, example: Placeholder | None) -> list[str]:
    if example is None:
        return [*_comment(text), f"# {name}={default}"]
    note = f"{text}. {example.note}" if example.note else text
    return [*_comment(note), f"{name}={example.value}"]


def render_env_example(
    settings: type[Settings] = Settings, sections: Sequence[Section] = SECTIONS
) -> str:
    """The whole `.env.example`: compose's variables, then every setting under its section."""
    blocks: list[list[str]] = [[_rule("docker compose only")]]
    for variable in COMPOSE_ONLY:
        if variable.in_env_example:
            text = variable.description
            default = variable.default or ""
            blocks.append(_entry(variable.name, text, default, variable.example))
    for section, fields in sectioned_fields(settings, sections):
        blocks.append([_rule(section.title), *_comment(section.note)])
        for field in fields:
            name = env_name(field)
            example = EXAMPLE_SETTINGS.get(name)
            blocks.append(_entry(name, description(field), env_default(field), example))
    return _ENV_HEADER + "".join("\n" + "\n".join(block) + "\n" for block in blocks)


# --- docs/configuration.md --------------------------------------------------------------------

_TABLE_HEAD = ["| variable | default | what |", "|---|---|---|"]


def _row(name: str, default: str, text: str) -> str:
    return f"| `{name}` | {default} | {text.replace('|', chr(92) + '|')} |"


def _variable_default(variable: Variable) -> str:
    if variable.docs_default:
        return variable.docs_default
    if variable.default is None:
        return "(required)"
    return variable.default if variable.default.isdigit() else f"`{variable.default}`"


def render_settings_tables(
    settings: type[Settings] = Settings, sections: Sequence[Section] = SECTIONS
) -> str:
    """One table per section of the settings the code reads."""
    parts = []
    for section, fields in sectioned_fields(settings, sections):
        rows = [_row(env_name(f), docs_default(f), description(f)) for f in fields]
        rows += [
            _row(v.name, _variable_default(v), v.description)
            for v in READ_ELSEWHERE.get(section.title, ())
        ]
        heading = section.title[0].upper() + section.title[1:]
        parts.append("\n".join([f"### {heading}", "", section.note, "", *_TABLE_HEAD, *rows]))
    return "\n\n".join(parts) + "\n"


def render_compose_table() -> str:
    rows = [_row(v.name, _variable_default(v), v.description) for v in COMPOSE_ONLY]
    return "\n".join([*_TABLE_HEAD, *rows]) + "\n"


def _markers(part: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN {part}: generated from app/config.py by `make settings-docs` -->",
        f"<!-- END {part} -->",
    )


def splice(page: str, part: str, content: str) -> str:
    """The page with what stands between `part`'s markers replaced by `content`."""
    begin, end = _markers(part)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(page)) != 1:
        raise ValueError(f"{CONFIGURATION_PAGE} needs the markers {begin!r} ... {end!r} once")
    return pattern.sub(lambda _: f"{begin}\n\n{content}\n{end}", page)


def render_configuration_page(page: str) -> str:
    page = splice(page, "settings", render_settings_tables())
    return splice(page, "compose", render_compose_table())


# --- python -m app.settings_reference ---------------------------------------------------------


def rendered_files(root: Path) -> dict[Path, str]:
    """Each generated file and what it should hold."""
    page = root / CONFIGURATION_PAGE
    return {
        root / ENV_EXAMPLE: render_env_example(),
        page: render_configuration_page(page.read_text()),
    }


def stale_files(root: Path) -> list[Path]:
    return [
        path
        for path, text in rendered_files(root).items()
        if not path.exists() or path.read_text() != text
    ]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.settings_reference",
        description="Render .env.example and docs/configuration.md's tables from app/config.py.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write both files")
    action.add_argument("--check", action="store_true", help="exit 1 when either is stale")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository's directory")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.write:
        for path, text in rendered_files(args.root).items():
            path.write_text(text)
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = stale_files(args.root)
        for path in stale:
            print(f"{path} differs from app/config.py: run `make settings-docs`", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(render_env_example())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
