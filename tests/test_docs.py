"""The documentation a user reaches from a clone: README.md, docs/ and bench/README.md.

Links are checked as GitHub renders them (a heading's anchor is its GitHub slug), and the
configuration page is checked against the settings the code reads, so neither can drift.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import Settings

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def _prose(page: Path) -> str:
    """The page without code (fenced blocks and inline spans), where links are not links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", page.read_text()))


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors: lowercase, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(page))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def _broken_links(page: Path, repo: Path) -> list[str]:
    """Relative links of `page` that leave `repo`, name no file, or name no heading."""
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(repo):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_and_heading_in_the_repository(page: Path) -> None:
    assert len(_relative_links(page)) >= 1
    assert _broken_links(page, REPO) == []


def test_a_link_out_of_the_clone_to_a_missing_file_or_heading_is_broken(tmp_path: Path) -> None:
    (tmp_path / "DESIGN.md").write_text("# Design\n")  # exists on this box, not in a clone
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "api.md").write_text("# HTTP API\n\n## The MCP endpoint (`/mcp`)\n")
    page = repo / "README.md"
    page.write_text(
        "[ok](docs/api.md#the-mcp-endpoint-mcp) [here](#) `[code](nowhere.md)`\n"
        "[design](../DESIGN.md) [gone](docs/agents.md) [anchor](docs/api.md#errors)\n"
        "```\n[fenced](nowhere.md)\n```\n[web](https://example.com/x.md)\n"
    )

    assert _broken_links(page, repo) == [
        "../DESIGN.md: outside the repository",
        "docs/agents.md: no such file",
        "docs/api.md#errors: no heading with that anchor",
    ]


def test_the_readme_stays_short_and_reaches_every_page() -> None:
    readme = REPO / "README.md"
    linked = {(REPO / link.partition("#")[0]).resolve() for link in _relative_links(readme)}

    assert len(readme.read_text().splitlines()) <= 200
    assert set(PAGES) - {readme} <= linked


def _configuration_rows() -> dict[str, str]:
    """Variable -> its default cell, from every table of docs/configuration.md."""
    text = (REPO / "docs" / "configuration.md").read_text()
    return dict(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", text, re.MULTILINE))


def test_the_configuration_page_lists_every_setting_and_every_compose_variable() -> None:
    listed = set(_configuration_rows())
    settings = {
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    }
    compose = (REPO / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)[:}?-]", compose))

    assert len(settings) >= 40
    assert settings - listed == set()
    assert interpolated - listed == set()


def _agrees(cell: str, default: object) -> bool:
    """Whether a default cell says what the code has: a number, a `literal`, or (empty...)."""
    number = re.match(r"^(\d+(?:\.\d+)?)(?:\s|$)", cell)
    literal = re.match(r"^`([^`]*)`", cell)
    if number:
        return float(number.group(1)) == float(default)  # type: ignore[arg-type]
    if literal:
        return literal.group(1) == default
    return not (cell.startswith("(empty") and default)


def test_the_configuration_page_gives_the_defaults_the_code_has() -> None:
    rows = _configuration_rows()
    wrong = [
        f"{name}: {rows[name]} (code: {field.default})"
        for field in Settings.model_fields.values()
        if (name := field.validation_alias.choices[0]) in rows  # type: ignore[union-attr]
        and not _agrees(rows[name].strip(), field.default)
    ]
    assert len(rows) >= 40
    assert wrong == []
