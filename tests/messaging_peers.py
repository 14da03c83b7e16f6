"""Real local servers for the messaging drivers: SMTP (aiosmtpd), Twilio's Messages API, and a
webhook receiver that verifies Standard Webhooks signatures. Each records what it received.

    with SmtpPeer(username="app", password="pw") as smtp:   # smtp.url: smtp://app:pw@127.0.0.1:N
        ...
        smtp.messages[0]["Subject"]

    with TwilioPeer("AC123", "token") as twilio:            # twilio.url for TWILIO_API_BASE
        ...
        twilio.sent[0]["To"]
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from standardwebhooks import Webhook

from tests.http_peer import HttpPeer, RecordedRequest, Reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSignedCert:
    """A certificate for 127.0.0.1 and localhost; trust it with SSL_CERT_FILE=cert_file."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def self_signed_cert(directory: Path) -> SelfSignedCert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCert(cert_file, key_file)


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    #: True when the session was encrypted (STARTTLS or implicit TLS).
    tls: bool
    #: The user that logged in, if any.
    login: str | None


class SmtpPeer:
    """aiosmtpd on 127.0.0.1: plain (STARTTLS offered when `cert` is given), or implicit TLS.

    `hold()` makes the server keep the client waiting after it has received a message's data
    and before it answers 250 (`arrived` is set meanwhile); `release()` lets it answer.
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        cert: SelfSignedCert | None = None,
        tls: Literal["starttls", "implicit"] = "starttls",
        data_reply: str = "250 OK",
    ) -> None:
        self.received: list[Received] = []
        self.username, self.password = username, password
        self.data_reply = data_reply
        self.arrived = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if username is not None:
            # AUTH offered without TLS too; mail without a login is refused in handle_DATA
            # (aiosmtpd's own auth_required warns when TLS is not required as well).
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self.scheme = "smtp"
        if cert is not None and tls == "starttls":
            kwargs.update(tls_context=cert.server_context(), require_starttls=False)
        elif cert is not None:
            kwargs.update(ssl_context=cert.server_context())
            self.scheme = "smtps"
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username is not None else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [item.message for item in self.received]

    def hold(self) -> None:
        self.arrived.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def close(self) -> None:
        self.release()
        self._controller.stop()

    def __enter__(self) -> SmtpPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (
            self.username,
            self.password,
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), message, tls, login)
        if not self._gate.is_set():
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self._gate.wait, 60)
        if self.data_reply.startswith("250"):
            with self._lock:
                self.received.append(received)
        return self.data_reply


# --- Twilio ----------------------------------------------------------------------------------


class TwilioPeer(HttpPeer):
    """Twilio's Messages API: checks basic auth and the form fields, answers a Message."""

    def __init__(self, account_sid: str, auth_token: str, *, fail_times: int = 0) -> None:
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token
        #: Answer 503 to the first N requests (a Twilio outage).
        self.fail_times = fail_times
        #: The form fields of every message created, oldest first.
        self.sent: list[dict[str, str]] = []
        self.sids: list[str] = []

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def _answer(self, request: RecordedRequest) -> tuple[Reply, int]:
        super()._answer(request)  # records it
        status, body = self._messages_api(request)
        return Reply(status=status, json=body), status

    def _messages_api(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if request.method != "POST" or request.route != self.messages_path:
            return 404, _twilio_error(20404, "The requested resource was not found", 404)
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return 401, _twilio_error(20003, "Authenticate", 401)
        with self._lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                return 503, _twilio_error(20500, "Service unavailable", 503)
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return 400, _twilio_error(20001, "form fields expected", 400)
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        for name, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
            if not form.get(name):
                return 400, _twilio_error(code, f"A '{name}' parameter is required.", 400)
        sid = "SM" + uuid.uuid4().hex
        with self._lock:
            self.sent.append(form)
            self.sids.append(sid)
        return 201, {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form["From"],
            "body": form["Body"],
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": "Tue, 24 Nov 2026 15:00:00 +0000",
            "uri": f"{self.messages_path[:-5]}/{sid}.json",
        }


def _twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# --- Webhook receiver ------------------------------------------------------------------------


@dataclass
class Delivery:
    webhook_id: str
    payload: Any


class WebhookReceiver(HttpPeer):
    """Answers 401 to a webhook whose Standard Webhooks signature does not verify."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.rejected = 0

    def _answer(self, request: RecordedRequest) -> tuple[Reply, int]:
        super()._answer(request)
        try:
            payload = Webhook(self.secret).verify(request.body, request.headers)
        except Exception:
            with self._lock:
                self.rejected += 1
            return Reply(status=401, json={"error": "bad signature"}), 401
        with self._lock:
            self.deliveries.append(Delivery(request.headers["webhook-id"], payload))
        return Reply(status=200, json={"ok": True}), 200
