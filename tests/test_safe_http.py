"""The SSRF guard (app/safe_http.py) against a real server on loopback."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.errors import BlockedDestination, PermanentDriverError
from app.safe_http import MAX_REDIRECTS, Allowlist, make_http_client, refusal_reason
from tests.http_peer import HttpPeer


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A guarded client; parametrize "client" indirectly with a Settings to change it."""
    settings = getattr(request, "param", None) or Settings(http_allowlist="127.0.0.1")
    with make_http_client(settings, timeout_s=5) as guarded:
        yield guarded


@pytest.fixture
def strict_client() -> Iterator[httpx.Client]:
    """A guarded client with an empty allowlist: production defaults."""
    with make_http_client(Settings(http_allowlist="")) as guarded:
        yield guarded


def test_loopback_is_refused_without_allowlist(
    strict_client: httpx.Client, http_peer: HttpPeer
) -> None:
    http_peer.reply("/guard/refused", json={"ok": True})
    with pytest.raises(BlockedDestination, match=r"127\.0\.0\.1"):
        strict_client.get(f"{http_peer.url}/guard/refused")
    assert http_peer.requests_to("/guard/refused") == []


def test_loopback_is_allowed_by_an_allowlisted_ip(
    client: httpx.Client, http_peer: HttpPeer
) -> None:
    http_peer.reply("/guard/allowed", json={"ok": True})
    response = client.get(f"{http_peer.url}/guard/allowed")
    assert response.json() == {"ok": True}


@pytest.mark.parametrize(
    "client", [Settings(http_allowlist="10.0.0.0/8, 127.0.0.0/8")], indirect=True
)
def test_loopback_is_allowed_by_an_allowlisted_network(
    client: httpx.Client, http_peer: HttpPeer
) -> None:
    assert client.get(f"{http_peer.url}/guard/cidr").status_code == 200


@pytest.mark.parametrize("client", [Settings(http_allowlist="localhost")], indirect=True)
def test_allowlisted_hostname_keeps_its_host_header(
    client: httpx.Client, http_peer: HttpPeer
) -> None:
    response = client.get(f"http://localhost:{http_peer.port}/guard/by-name")
    assert response.status_code == 200
    [request] = http_peer.requests_to("/guard/by-name")
    assert request.headers["host"] == f"localhost:{http_peer.port}"


def test_metadata_address_is_refused(client: httpx.Client) -> None:
    with pytest.raises(BlockedDestination, match=r"169\.254\.169\.254"):
        client.get("http://169.254.169.254/latest/meta-data/")


def test_redirect_to_a_refused_address_is_refused(
    client: httpx.Client, http_peer: HttpPeer
) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam"
    http_peer.reply("/guard/to-metadata", status=302, headers={"Location": target})
    with pytest.raises(BlockedDestination, match=r"169\.254\.169\.254"):
        client.get(f"{http_peer.url}/guard/to-metadata")


def test_redirect_to_an_allowed_address_is_followed(
    client: httpx.Client, http_peer: HttpPeer
) -> None:
    http_peer.reply("/guard/hop", status=307, headers={"Location": "/guard/landing"})
    http_peer.reply("/guard/landing", json={"landed": True})
    assert client.get(f"{http_peer.url}/guard/hop").json() == {"landed": True}


def test_redirects_are_capped(client: httpx.Client, http_peer: HttpPeer) -> None:
    http_peer.reply("/guard/loop", status=302, headers={"Location": "/guard/loop"})
    with pytest.raises(httpx.TooManyRedirects):
        client.get(f"{http_peer.url}/guard/loop")
    assert len(http_peer.requests_to("/guard/loop")) == MAX_REDIRECTS + 1


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd"])
def test_non_http_scheme_is_refused(client: httpx.Client, url: str) -> None:
    with pytest.raises(BlockedDestination, match="http"):
        client.get(url)


@pytest.mark.parametrize(
    "client", [Settings(http_allowlist="127.0.0.1", http_max_response_bytes=100)], indirect=True
)
def test_response_larger_than_the_cap_is_refused(client: httpx.Client, http_peer: HttpPeer) -> None:
    http_peer.reply("/guard/big", body="x" * 1000)
    http_peer.reply("/guard/small", body="x" * 100)
    with pytest.raises(PermanentDriverError, match="response larger than 100 bytes"):
        client.get(f"{http_peer.url}/guard/big")
    assert client.get(f"{http_peer.url}/guard/small").text == "x" * 100


@pytest.mark.parametrize(
    "client", [Settings(http_allowlist="127.0.0.1", http_max_response_bytes=1000)], indirect=True
)
def test_cap_applies_to_the_decoded_body(client: httpx.Client, http_peer: HttpPeer) -> None:
    bomb = gzip.compress(b"0" * 100_000)  # ~100 bytes on the wire
    http_peer.reply("/guard/gzip", body=bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(PermanentDriverError, match="response larger than 1000 bytes"):
        client.get(f"{http_peer.url}/guard/gzip")


def test_small_gzip_body_is_decoded(client: httpx.Client, http_peer: HttpPeer) -> None:
    http_peer.reply(
        "/guard/gzip-ok", body=gzip.compress(b"hello"), headers={"Content-Encoding": "gzip"}
    )
    assert client.get(f"{http_peer.url}/guard/gzip-ok").text == "hello"


def test_refusal_names_the_host_but_not_the_query_string(
    strict_client: httpx.Client, http_peer: HttpPeer
) -> None:
    with pytest.raises(BlockedDestination) as caught:
        strict_client.get(f"{http_peer.url}/guard/q?token=s3cret&user=me")
    message = str(caught.value)
    assert "127.0.0.1" in message
    assert "s3cret" not in message
    assert "token" not in message


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allowlist_matches_hosts_and_networks() -> None:
    allowlist = Allowlist(" LocalHost ,10.0.0.0/8,, 192.168.1.5")
    assert allowlist.allows("localhost", ipaddress.ip_address("127.0.0.1"))
    assert allowlist.allows("db.internal", ipaddress.ip_address("10.9.8.7"))
    assert allowlist.allows("printer", ipaddress.ip_address("192.168.1.5"))
    assert not allowlist.allows("printer", ipaddress.ip_address("192.168.1.6"))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a certificate for the name `localhost` only (no IP address)."""
    if shutil.which("openssl") is None:
        pytest.fail(
            "the openssl command is needed to make a test certificate (apt-get install openssl)"
        )
    folder = tmp_path_factory.mktemp("tls")

    def openssl(command: str) -> None:
        args = ["openssl", *command.split()]
        subprocess.run(args, cwd=folder, check=True, capture_output=True)

    openssl(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2"
        " -subj /CN=dualmcp-test-ca -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign"
    )
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost")
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem"
        " -days 2 -extfile san.cnf"
    )
    return folder


@pytest.fixture
def tls_port(tls_files: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 that answers with the Host header it got."""

    class EchoHost(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(self.headers["Host"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "server.pem", tls_files / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHost)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files / "ca.pem"))  # read by the client's context
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_https_goes_to_the_checked_address_and_verifies_the_real_name(tls_port: int) -> None:
    with make_http_client(Settings(http_allowlist="localhost")) as client:
        assert client.get(f"https://localhost:{tls_port}/").text == f"localhost:{tls_port}"


def test_https_certificate_must_match_the_url_host(tls_port: int) -> None:
    with (
        make_http_client(Settings(http_allowlist="127.0.0.1")) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://127.0.0.1:{tls_port}/")
