"""Sending one email over SMTP (smtplib): STARTTLS when offered, or TLS from the start.

The server comes from SMTP_URL (the operator's: trusted, like the *_BASE_URL settings) or from
a credential stored with a workflow (checked like every address a workflow names: resolved once,
refused when private unless DUALMCP_HTTP_ALLOWLIST names it, then connected to by address while
TLS still verifies the name). Errors say host and port, status and reason, never a password.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from app.errors import BlockedDestination, NodeTimeout, PermanentDriverError, RetryableDriverError
from app.safe_http import Allowlist, refusal_reason, resolve

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


@dataclass(frozen=True)
class SmtpServer:
    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: True for SMTP_URL (ops set it); False for a workflow's credential (address-checked).
    trusted: bool = True

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str, *, source: str, trusted: bool) -> SmtpServer:
    """`smtp://user:pass@host:port` or `smtps://...`; ValueError naming `source`, not the URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{source} is not a valid smtp:// or smtps:// URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{source} must be an smtp:// or smtps:// URL with a host")
    return SmtpServer(
        scheme="smtps" if scheme == "smtps" else "smtp",
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        trusted=trusted,
    )


def send_email(
    server: SmtpServer,
    message: EmailMessage,
    *,
    sender: str,
    recipients: list[str],
    timeout_s: float,
    allowlist: Allowlist,
) -> list[str]:
    """Send `message` to `recipients`; returns the recipients the server refused (the others
    got it). Raises RetryableDriverError, NodeTimeout or PermanentDriverError."""
    context = ssl.create_default_context()
    pinned = None if server.trusted else checked_address(server.host, server.port, allowlist)
    client: _PinnedSMTP | _PinnedSMTPSSL
    if server.scheme == "smtps":
        client = _PinnedSMTPSSL(context=context, timeout=timeout_s, local_hostname=_helo_name())
    else:
        client = _PinnedSMTP(timeout=timeout_s, local_hostname=_helo_name())
    client.pinned = pinned
    # smtplib verifies TLS against the host given to its constructor, not to connect().
    client._host = server.host
    try:
        client.connect(server.host, server.port)
        client.ehlo()
        if server.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        if server.username:
            client.login(server.username, server.password or "")
        refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
    except Exception as exc:
        raise _driver_error(exc, server) from None
    finally:
        with suppress(Exception):
            client.quit()
        client.close()
    return sorted(refused)


def checked_address(host: str, port: int, allowlist: Allowlist) -> str:
    """The address to connect to: every address `host` resolves to must be public, or
    allowlisted (the rule of app/safe_http.py, for a protocol httpx does not speak)."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise RetryableDriverError(f"could not resolve SMTP host {host!r}") from None
    for address in addresses:
        reason = refusal_reason(address)
        if reason and not allowlist.allows(host, address):
            raise BlockedDestination(
                f"refused SMTP host {host!r}: {address} is {reason}"
                " (DUALMCP_HTTP_ALLOWLIST may allow it)"
            )
    if not addresses:
        raise RetryableDriverError(f"SMTP host {host!r} has no address")
    return str(addresses[0])


class _Pinned:
    """Connects to the checked address while smtplib keeps the name (for TLS verification)."""

    pinned: str | None = None
    _host: str

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        return super()._get_socket(self.pinned or host, port, timeout)  # type: ignore[misc]


class _PinnedSMTP(_Pinned, smtplib.SMTP):
    pass


class _PinnedSMTPSSL(_Pinned, smtplib.SMTP_SSL):
    pass


def _helo_name() -> str:
    # smtplib's default is socket.getfqdn(), a DNS lookup that can take seconds.
    return socket.gethostname() or "localhost"


def _driver_error(exc: BaseException, server: SmtpServer) -> Exception:
    where = f"SMTP server {server.where}"
    if isinstance(exc, PermanentDriverError | RetryableDriverError):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        return NodeTimeout(f"{where} timed out")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentDriverError(f"{where} refused the login ({exc.smtp_code})")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _reason in exc.recipients.values()})
        kind = RetryableDriverError if all(400 <= c < 500 for c in codes) else PermanentDriverError
        return kind(f"{where} refused every recipient ({', '.join(map(str, codes))})")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDriverError(f"{where}: {exc}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reason = _text(exc.smtp_error)
        kind = RetryableDriverError if 400 <= exc.smtp_code < 500 else PermanentDriverError
        return kind(f"{where} answered {exc.smtp_code} {reason}".rstrip())
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDriverError(f"TLS with {where} failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return PermanentDriverError(f"TLS with {where} failed: {exc.reason or type(exc).__name__}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableDriverError(f"{where} closed the connection")
    if isinstance(exc, smtplib.SMTPException):  # e.g. no AUTH method in common
        return PermanentDriverError(f"{where}: {exc}")
    if isinstance(exc, OSError):  # refused, reset, unreachable (SMTPException is one too)
        return RetryableDriverError(f"could not reach {where}: {type(exc).__name__}")
    return exc if isinstance(exc, Exception) else RuntimeError(type(exc).__name__)


def _text(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]
