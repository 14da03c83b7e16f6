"""The pages at /ui: public, data-free HTML shells, and fragments that hold the data.

A shell is the same for everyone; htmx fetches its fragments with the API key from
sessionStorage as a Bearer header (static/ui.js), and each fragment checks it like the API
(read scope; admin sees the retry and cancel buttons). No cookie, so no CSRF; no inline script,
so the Content-Security-Policy (security.py) can forbid every script but ours.
"""

from __future__ import annotations

from flask import Flask, redirect, url_for
from flask.typing import ResponseReturnValue

from app.web.ui import display, fragments, pages


def init_app(app: Flask) -> None:
    """Register the pages, their fragments, the template filters, and `/` -> /ui/."""
    display.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(fragments.bp)
    app.add_url_rule("/", "ui_root", _to_the_pages)


def _to_the_pages() -> ResponseReturnValue:
    return redirect(url_for("ui.runs_page"))
