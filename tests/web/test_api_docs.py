"""GET /api/docs: the OpenAPI document rendered by the vendored Redoc, with nothing fetched
from elsewhere (it works offline)."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

import app.web

DOCS_PAGE = Path(app.web.__file__).parent / "docs_page"


def test_the_docs_page_renders_the_document_with_the_vendored_bundle(
    client: FlaskClient,
) -> None:
    answer = client.get("/api/docs")
    page = answer.get_data(as_text=True)

    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert 'spec-url="/api/openapi.json"' in page
    assert '<script src="/api/docs/assets/redoc.standalone.js">' in page


def test_the_docs_page_loads_nothing_from_another_host(client: FlaskClient) -> None:
    answer = client.get("/api/docs")

    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", answer.get_data(as_text=True))
    assert "script-src 'self';" in answer.headers["Content-Security-Policy"]


def test_the_bundle_is_served_from_the_package(client: FlaskClient) -> None:
    answer = client.get("/api/docs/assets/redoc.standalone.js")

    assert answer.status_code == 200
    assert answer.mimetype in ("text/javascript", "application/javascript")
    assert answer.get_data() == (DOCS_PAGE / "redoc.standalone.js").read_bytes()
    answer.close()


def test_the_vendored_version_and_licence_are_written_down() -> None:
    readme = (DOCS_PAGE / "README.md").read_text()

    assert re.search(r"redoc@\d+\.\d+\.\d+", readme)
    assert (DOCS_PAGE / "LICENSE").is_file()
