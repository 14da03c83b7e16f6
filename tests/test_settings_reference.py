""".env.example and docs/configuration.md say what app/config.py has (issue 16: "defaults that
are not defaults"): both are its rendering, and the hand-written deploy files name only settings
the code reads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import Field, SecretStr

from app import settings_reference
from app.config import SECTIONS, Settings
from app.settings_reference import (
    COMPOSE_ONLY,
    EXAMPLE_SETTINGS,
    READ_ELSEWHERE,
    env_default,
    env_name,
    render_configuration_page,
    render_env_example,
    render_settings_tables,
)

REPO = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = REPO / ".env.example"
PAGE = REPO / "docs" / "configuration.md"
KUBERNETES = REPO / "deploy" / "kubernetes"

_COMMENTED = re.compile(r"^# ([A-Z][A-Z0-9_]+)=(.*)$", re.MULTILINE)
_SET = re.compile(r"^([A-Z][A-Z0-9_]+)=(.*)$", re.MULTILINE)


def _names() -> dict[str, str]:
    """Environment variable -> field name."""
    return {env_name(field): name for name, field in Settings.model_fields.items()}


def test_env_example_is_the_rendering_of_the_settings() -> None:
    assert ENV_EXAMPLE.read_text() == render_env_example(), "run `make settings-docs`"


def test_the_configuration_page_tables_are_the_rendering_of_the_settings() -> None:
    page = PAGE.read_text()
    assert page == render_configuration_page(page), "run `make settings-docs`"


def test_every_setting_has_a_description_fit_for_a_table() -> None:
    undescribed = [name for name, f in Settings.model_fields.items() if not f.description]
    piped = [name for name, f in Settings.model_fields.items() if "|" in (f.description or "")]
    assert len(Settings.model_fields) >= 50
    assert undescribed == []
    assert piped == []


def test_every_setting_is_in_exactly_one_section() -> None:
    listed = [name for section in SECTIONS for name in section.fields]
    assert sorted(listed) == sorted(Settings.model_fields)


def test_a_setting_in_no_section_stops_the_rendering() -> None:
    class Unsectioned(Settings):
        brand_new_s: float = Field(
            1.0, validation_alias="DUALMCP_BRAND_NEW_S", description="a new knob"
        )

    with pytest.raises(ValueError, match="in none \\['brand_new_s'\\]"):
        render_env_example(Unsectioned)


def test_commented_lines_of_env_example_are_the_code_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting every line must change nothing: pydantic reads them as the defaults."""
    fields = _names()
    shown = {name: value for name, value in _COMMENTED.findall(ENV_EXAMPLE.read_text()) if value}
    (tmp_path / ".env").write_text("".join(f"{n}={v}\n" for n, v in shown.items()))
    monkeypatch.chdir(tmp_path)
    for name in shown:
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    differ = {
        name: value
        for name, value in shown.items()
        if name in fields
        and getattr(settings, fields[name]) != Settings.model_fields[fields[name]].default
    }
    assert {"DUALMCP_MAX_QUEUE_DEPTH", "DUALMCP_PENDING_REPUBLISH_S"} <= set(shown)
    assert differ == {}


def test_only_the_placeholders_a_stack_needs_are_set_uncommented() -> None:
    set_lines = dict(_SET.findall(ENV_EXAMPLE.read_text()))
    assert set_lines == {
        "POSTGRES_USER": "dualmcp",
        "POSTGRES_PASSWORD": "change-me-to-a-long-random-password",
        "POSTGRES_DB": "dualmcp",
        "FLOWER_BASIC_AUTH": "flower:change-me-flower-password",
        "DUALMCP_API_KEYS": "admin:change-me-admin-key",
        "DUALMCP_ENCRYPTION_KEY": EXAMPLE_SETTINGS["DUALMCP_ENCRYPTION_KEY"].value,
    }


def test_a_changed_default_shows_in_both_renderings() -> None:
    class Changed(Settings):
        max_queue_depth: int = Field(
            10_000,
            validation_alias="DUALMCP_MAX_QUEUE_DEPTH",
            description=Settings.model_fields["max_queue_depth"].description,
        )

    env = render_env_example(Changed)
    assert "\n# DUALMCP_MAX_QUEUE_DEPTH=10000\n" in env
    assert env != ENV_EXAMPLE.read_text()
    assert "| `DUALMCP_MAX_QUEUE_DEPTH` | 10000 |" in render_settings_tables(Changed)
    assert render_settings_tables(Changed) not in PAGE.read_text()


def test_a_changed_default_under_a_docs_note_is_refused_not_hidden() -> None:
    """`docs_default` annotates a real default and must begin with it: else the docs could keep
    saying `text` after the code changed to `json`."""
    original = Settings.model_fields["log_format"]

    class Changed(Settings):
        log_format: Literal["json", "text"] = Field(
            "json",
            validation_alias="DUALMCP_LOG_FORMAT",
            description=original.description,
            json_schema_extra=original.json_schema_extra,
        )

    with pytest.raises(ValueError, match="DUALMCP_LOG_FORMAT: docs_default"):
        render_settings_tables(Changed)


def _compose_interpolations() -> list[tuple[str, str, str]]:
    """(name, operator, default or message) of every `${...}` in docker-compose.yml (`$${...}`
    is a literal `${...}` for the container's shell)."""
    text = (REPO / "docker-compose.yml").read_text()
    return re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", text)


def test_compose_variables_have_the_defaults_docker_compose_yml_gives_them() -> None:
    listed = {variable.name: variable for variable in COMPOSE_ONLY}
    wrong = []
    for name, operator, rest in _compose_interpolations():
        if name not in listed:
            continue
        expected = None if operator == ":?" else rest
        if listed[name].default != expected:
            wrong.append(f"{name}: {listed[name].default!r} here, {expected!r} in compose")
    assert len(listed) >= 15
    assert wrong == []


def test_every_variable_compose_interpolates_is_listed() -> None:
    interpolated = {name for name, _, _ in _compose_interpolations()}
    listed = {variable.name for variable in COMPOSE_ONLY} | set(_names())
    assert len(interpolated) >= 15
    assert interpolated - listed == set()


def _kubernetes_settings() -> dict[str, str]:
    config = yaml.safe_load((KUBERNETES / "config" / "configmap.yaml").read_text())["data"]
    secret = yaml.safe_load((KUBERNETES / "examples" / "secret.yaml").read_text())["stringData"]
    return {**config, **secret}


def _as_env(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value)


def test_the_config_map_and_secret_set_settings_the_code_reads_to_values_it_accepts() -> None:
    given = _kubernetes_settings()
    fields = _names()
    elsewhere = {v.name for variables in READ_ELSEWHERE.values() for v in variables}
    settings = Settings(**{name: value for name, value in given.items() if name in fields})  # type: ignore[arg-type]

    unknown = set(given) - set(fields) - elsewhere
    misread = {
        name: value
        for name, value in given.items()
        if name in fields and _as_env(getattr(settings, fields[name])) != str(value)
    }
    assert "DUALMCP_MAX_QUEUE_DEPTH" in given
    assert unknown == set()
    assert misread == {}


def test_check_fails_on_a_stale_file_until_write_renders_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(PAGE, tmp_path / "docs" / "configuration.md")
    (tmp_path / ".env.example").write_text(
        ENV_EXAMPLE.read_text().replace("MAX_QUEUE_DEPTH=200", "MAX_QUEUE_DEPTH=10000")
    )
    root = ["--root", str(tmp_path)]

    assert settings_reference.main(["--check", *root]) == 1
    assert settings_reference.main(["--write", *root]) == 0
    assert settings_reference.main(["--check", *root]) == 0
    assert (tmp_path / ".env.example").read_text() == ENV_EXAMPLE.read_text()


def test_commented_defaults_spell_floats_as_people_write_them() -> None:
    field = Settings.model_fields["default_node_timeout_s"]
    assert env_default(field) == "300"
    assert float(env_default(field)) == field.default
