"""How the pages write times, durations and JSON: Jinja filters, registered by init_app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Flask

#: Characters of one JSON value shown on a page; the API has the whole of it.
MAX_JSON_CHARS = 20_000


def init_app(app: Flask) -> None:
    app.add_template_filter(ui_time, "ui_time")
    app.add_template_filter(ui_duration, "ui_duration")
    app.add_template_filter(ui_json, "ui_json")


def ui_time(value: str | datetime | None) -> str:
    """UTC, to the second: "2026-12-01 18:30:05"."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def ui_duration(milliseconds: float | None) -> str:
    """ "840 ms", "3.2 s", "4 min 05 s"."""
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def ui_json(value: Any) -> str:
    """Indented JSON, cut at MAX_JSON_CHARS (the template escapes it)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > MAX_JSON_CHARS:
        return (
            text[:MAX_JSON_CHARS] + f"\n… (cut at {MAX_JSON_CHARS} characters; the API has it all)"
        )
    return text
