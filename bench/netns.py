"""Machines of their own for workers: network namespaces joined to the host by veth pairs.

Namespace N (`dmcpN`) holds one end of a veth pair at 10.77.N.2/30; the host's end (`dmcpNh`)
is 10.77.N.1/30. Nothing else: no default route, no forwarding (an nftables forward chain drops
anything crossing our links, whatever `ip_forward` says), so a namespace reaches the host and
nothing beyond it. Inside each, `bench-host` names the host's end (`/etc/netns/dmcpN/hosts`,
which `ip netns exec` mounts over /etc/hosts), so one workflow URL reaches the host from all.

The host's PostgreSQL and Redis listen on 127.0.0.1 only; an nftables DNAT rule per link sends
10.77.N.1:<port> to 127.0.0.1:<port> (with `route_localnet` on our host ends only). Chosen over a
user-space relay, which would copy every byte of every statement and command on a CPU the
system under test needs (2 cores), and over new listen addresses, which PostgreSQL takes only
on a restart. The servers still see the namespace's address as the client's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.stack import BenchError

PREFIX = "dmcp"
NFT_TABLE = "dualmcp_bench"
#: What the host's end of the link is called inside every namespace.
HOST_NAME = "bench-host"
NETNS_ETC = Path("/etc/netns")
_NAME = re.compile(rf"^{PREFIX}\d+$")


@dataclass(frozen=True)
class Namespace:
    index: int

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def host_link(self) -> str:
        """The host's end of the veth pair: `ip link set <it> down` cuts the namespace off."""
        return f"{self.name}h"

    @property
    def host_address(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.77.{self.index}.2"

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


def require_tools() -> None:
    """Fail loudly (never skip) where namespaces cannot be made."""
    if os.geteuid() != 0:
        raise BenchError("scale-out needs root (ip netns, veth pairs, nftables); run as root")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"scale-out needs {' and '.join(missing)} (iproute2, nftables)")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _nft(script: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"nft: {done.stderr.strip()}")


def remove_all() -> None:
    """Every namespace (and any process left in one), link, rule and hosts file of ours, also
    a killed earlier run's."""
    listed = _ip("netns", "list", check=False).stdout.split()
    for name in (word for word in listed if _NAME.match(word)):
        # A killed run's workers are still in there, retrying a host they cannot reach.
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "delete", name, check=False)
    links = _ip("-o", "link", "show", check=False).stdout
    for link in re.findall(rf"^\d+: ({PREFIX}\d+h)[@:]", links, flags=re.MULTILINE):
        _ip("link", "delete", link, check=False)
    subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True)
    for directory in NETNS_ETC.glob(f"{PREFIX}*"):
        if _NAME.match(directory.name):
            shutil.rmtree(directory, ignore_errors=True)


def _create(space: Namespace) -> None:
    _ip("netns", "add", space.name)
    _ip("link", "add", space.host_link, "type", "veth", "peer", "name", "eth0", "netns", space.name)
    _ip("addr", "add", f"{space.host_address}/30", "dev", space.host_link)
    _ip("link", "set", space.host_link, "up")
    _ip("-n", space.name, "addr", "add", f"{space.address}/30", "dev", "eth0")
    _ip("-n", space.name, "link", "set", "eth0", "up")
    _ip("-n", space.name, "link", "set", "lo", "up")
    # Packets DNATed to 127.0.0.1 arrive on this link; the kernel drops them without this.
    Path(f"/proc/sys/net/ipv4/conf/{space.host_link}/route_localnet").write_text("1")
    hosts = NETNS_ETC / space.name
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts").write_text(
        f"127.0.0.1 localhost\n{space.host_address} {HOST_NAME}\n{space.address} {space.name}\n"
    )


def _rules(spaces: list[Namespace], ports: list[int]) -> str:
    port_set = ", ".join(str(port) for port in ports)
    dnat = "\n".join(
        f'    iifname "{s.host_link}" ip daddr {s.host_address} tcp dport {{ {port_set} }}'
        " dnat to 127.0.0.1"
        for s in spaces
    )
    return (
        f"table ip {NFT_TABLE} {{\n"
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f"{dnat}\n  }}\n"
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        f'    iifname "{PREFIX}*" drop\n    oifname "{PREFIX}*" drop\n  }}\n'
        "}\n"
    )


@contextmanager
def namespaces(count: int, forwarded_ports: list[int]) -> Iterator[list[Namespace]]:
    """`count` namespaces whose traffic to host_address:<forwarded port> reaches 127.0.0.1;
    all removed on the way out, and any left by an earlier run removed on the way in."""
    require_tools()
    remove_all()
    spaces = [Namespace(index) for index in range(1, count + 1)]
    try:
        for space in spaces:
            _create(space)
        _nft(_rules(spaces, forwarded_ports))
        yield spaces
    finally:
        remove_all()


def set_link(space: Namespace, up: bool) -> None:
    """Cut (or restore) the namespace's only link, as a machine's network failing would."""
    _ip("link", "set", space.host_link, "up" if up else "down")


def leftovers() -> list[str]:
    """What of ours is still there (for the scenario's own check that it cleaned up)."""
    found = [w for w in _ip("netns", "list", check=False).stdout.split() if _NAME.match(w)]
    with suppress(OSError):
        found += [d.name for d in NETNS_ETC.glob(f"{PREFIX}*")]
    table = subprocess.run(["nft", "list", "table", "ip", NFT_TABLE], capture_output=True)
    if table.returncode == 0:
        found.append(f"nft table {NFT_TABLE}")
    return found
