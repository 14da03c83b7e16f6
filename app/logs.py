"""Logging for every process: one line per event, JSON or text, with secrets masked.

`DUALMCP_LOG_FORMAT=json` writes one JSON object per line (what log shippers parse); `text` is
for people. Either way each record carries the run, node and workflow it concerns when known
(`log_context`), and the request id that follows a trigger from the front end to its last node
(app/web/request_id.py sets it; node messages carry it in a header). `RedactingFilter` masks
secret values before anything is written: values of secret-looking keys, credentials in URLs,
bearer tokens, webhook secrets, and the exact values of the secret settings this process knows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from app.config import Settings

MASK = "***"
#: The request, run, node or workflow the current code works on (set by `log_context`).
CONTEXT_FIELDS = ("request_id", "run_id", "node_id", "workflow_id")
_context: ContextVar[dict[str, str]] = ContextVar("dualmcp_log_context", default={})  # noqa: B039

#: Keys whose values are secrets wherever they appear (dict keys, key=value, "key": "value").
SECRET_KEY = re.compile(
    r"secret|token|passw|api[_-]?key|authorization|cookie|signature|credential|private[_-]?key",
    re.IGNORECASE,
)
#: The key starts where a word starts (the lookbehind), so the positions inside a long word (a
#: task id) are not starts to backtrack from.
_KEY_VALUE = re.compile(
    r"""(?P<key>["']?(?<![\w.-])[\w.-]*"""
    r"""(?:secret|token|passw\w*|api[_-]?key|authorization|cookie|signature|credential"""
    r"""|private[_-]?key)[\w.-]*["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<scheme>(?:bearer|basic)\s+)?(?P<value>"[^"]*"|'[^']*'|[^\s,;&}\]]+)""",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)@")
_BEARER = re.compile(r"(?P<head>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(r"\b(?P<prefix>whsec_|sk-|sk_live_|sk_test_|xox[bp]-)[A-Za-z0-9+/=_-]+")
#: Shorter known values are not masked: they would mask ordinary words.
MIN_KNOWN_SECRET = 8

_STANDARD_ATTRS = frozenset(
    set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
    | {"message", "asctime", "taskName", *CONTEXT_FIELDS, "context"}
)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach request_id / run_id / node_id / workflow_id to every record logged inside the
    block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: str | None) -> Token[dict[str, str]]:
    """`log_context` for code that cannot wrap a block (a request's before and teardown hooks);
    hand the token to `unbind_log_context`."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind_log_context(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


def log_context_value(name: str) -> str | None:
    """One field of the current context: a publisher reads the request id here to carry it on."""
    return _context.get().get(name)


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with secret values replaced by ***."""
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _TOKEN_SHAPES.sub(lambda m: f"{m['prefix']}{MASK}", text)
    if SECRET_KEY.search(text) is None:  # every key _KEY_VALUE masks holds one of these words
        return text
    return _KEY_VALUE.sub(_mask_value, text)


def _mask_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['key']}{match['sep']}{match['scheme'] or ''}{quote}{MASK}{quote}"


def redact_value(value: Any, known: Iterable[str] = (), key: str = "") -> Any:
    """A structure with secret-keyed values masked and every string redacted."""
    if key and SECRET_KEY.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact_value(v, known, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item, known) for item in value]
    return value


def known_secrets(settings: Settings) -> list[str]:
    """Values from the settings that must never be logged, longest first."""
    values: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.add(value.get_secret_value())
        elif isinstance(value, str) and SECRET_KEY.search(name):
            values.add(value)
        elif isinstance(value, str) and "://" in value:
            password = urlsplit(value).password
            if password:
                values.add(password)
    for pair in settings.api_keys.split(","):
        values.add(pair.partition(":")[2].strip())
    return sorted((v for v in values if len(v) >= MIN_KNOWN_SECRET), key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, its arguments, `extra` fields and the traceback; also
    attaches the current log context. Attached to handlers, so every record passes it."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        super().__init__()
        self.known = list(known)

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        if not getattr(record, "_dualmcp_redacted", False):
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # bad %-args: logging reports it when formatting
                return True
            record.msg = redact_text(message, self.known)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text, self.known)
            for name, value in extra_fields(record).items():
                setattr(record, name, redact_value(value, self.known, name))
            record._dualmcp_redacted = True
        record.context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None)
        )
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed with `extra=`, plus the log context."""
    return {
        name: value
        for name, value in record.__dict__.items()
        if (name not in _STANDARD_ATTRS or name in CONTEXT_FIELDS) and not name.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [run_id=.. node_id=..]` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", "")
        if context:
            first, newline, rest = line.partition("\n")
            line = f"{first} [{context}]{newline}{rest}"
        return line


def logging_config(settings: Settings, level: str | int | None = None) -> dict[str, Any]:
    """A dictConfig for the root logger (also handed to gunicorn as `logconfig_dict`)."""
    formatter = "json" if settings.log_format == "json" else "text"
    level_name = logging.getLevelName(level) if isinstance(level, int) else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter, "known": known_secrets(settings)}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["redact"],
            }
        },
        "root": {"level": (level_name or settings.log_level).upper(), "handlers": ["stderr"]},
        # gunicorn's own loggers, so its lines share the format; they propagate to root.
        "loggers": {
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True},
        },
    }


def configure_logging(settings: Settings, level: str | int | None = None) -> None:
    """Install the handler for this process (web, worker, beat, standalone)."""
    import logging.config

    logging.config.dictConfig(logging_config(settings, level))
