"""The one SSRF-guarded HTTP client that every outgoing request uses (DESIGN.md, Templating safety).

URLs in workflows are templates filled from trigger payloads, so any of them may point at the
cloud metadata service or at a database on the private network. The guard sits in the transport,
below httpx's redirect handling, so every hop is checked the same way:

- http and https only;
- the host is resolved once and every address it resolves to must be public, unless
  `DUALMCP_HTTP_ALLOWLIST` names the host or a network holding the address;
- the connection goes to the checked address (the URL's host is rewritten to the IP, the Host
  header is kept, and TLS is verified against the real name through the `sni_hostname`
  extension), so a second DNS answer cannot swap in another address (DNS rebinding);
- the body, decoded, is capped at `http_max_response_bytes`, and redirects at MAX_REDIRECTS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import httpx

from app.config import Settings
from app.errors import BlockedDestination, PermanentDriverError

__all__ = ["MAX_REDIRECTS", "Allowlist", "GuardedTransport", "make_http_client"]

MAX_REDIRECTS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowlist:
    """Hostnames and networks that may be reached although private (DUALMCP_HTTP_ALLOWLIST)."""

    def __init__(self, spec: str) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(
            address in network for network in self.networks
        )


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` must not be reached from a workflow, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local or metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    # is_global is False for 10/8, 172.16/12, 192.168/16, 100.64/10, 0/8, fc00::/7, reserved...
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order (resolved once per request)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class _CappedStream(httpx.SyncByteStream):
    """The decoded body, refused past `limit` bytes: a gzip bomb is capped like a plain one."""

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._response.iter_bytes():
            size += len(chunk)
            if size > self._limit:
                raise PermanentDriverError(f"response larger than {self._limit} bytes")
            yield chunk

    def close(self) -> None:
        self._response.close()


class GuardedTransport(httpx.BaseTransport):
    """Checks each request's destination, then sends it to the checked address."""

    def __init__(self, allowlist: Allowlist, max_response_bytes: int) -> None:
        self._allowlist = allowlist
        self._max_response_bytes = max_response_bytes
        self._ssl_context = httpx.create_ssl_context()  # certifi, as httpx does
        # httpcore pools connections by (scheme, IP, port): one pool per hostname keeps a TLS
        # connection verified for one name from carrying requests for another name on that IP.
        self._pools: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        if url.scheme not in ("http", "https"):
            raise BlockedDestination(f"refused {url.scheme!r} URL for host {host!r}: http(s) only")
        if not host:
            raise BlockedDestination("refused a URL without a host")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = self._checked_addresses(request, host, port)
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        pool = self._pool(host)
        for index, address in enumerate(addresses):
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=str(address)),
                headers=request.headers,  # keeps Host: the real name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                response = pool.handle_request(pinned)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
                continue  # like socket.create_connection: try the next address
            return self._capped(response)
        raise AssertionError("unreachable: resolve() returned no address")  # pragma: no cover

    def _checked_addresses(self, request: httpx.Request, host: str, port: int) -> list[IPAddress]:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"could not resolve host {host!r}", request=request) from exc
        for address in addresses:
            reason = refusal_reason(address)
            if reason and not self._allowlist.allows(host, address):
                raise BlockedDestination(
                    f"refused host {host!r}: {address} is {reason}"
                    " (DUALMCP_HTTP_ALLOWLIST may allow it)"
                )
        if not addresses:
            raise httpx.ConnectError(f"host {host!r} has no address", request=request)
        return addresses

    def _pool(self, host: str) -> httpx.HTTPTransport:
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = httpx.HTTPTransport(verify=self._ssl_context, trust_env=False)
                self._pools[host] = pool
            return pool

    def _capped(self, response: httpx.Response) -> httpx.Response:
        limit = self._max_response_bytes
        declared = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
        if not encoded and declared.isdigit() and int(declared) > limit:
            response.close()
            raise PermanentDriverError(f"response larger than {limit} bytes")
        # The capped stream yields decoded bytes, so the encoding headers no longer apply.
        drop = {b"content-encoding", b"content-length"} if encoded else set()
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_CappedStream(response, limit),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def make_http_client(settings: Settings, *, timeout_s: float = 30.0) -> httpx.Client:
    """The client drivers get as `ctx.http`; close it (or use it as a context manager) when done."""
    allowlist = Allowlist(settings.http_allowlist)
    transport = GuardedTransport(allowlist, settings.http_max_response_bytes)
    return httpx.Client(
        transport=transport,
        timeout=timeout_s,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,  # no proxies or .netrc credentials picked up from the environment
    )
