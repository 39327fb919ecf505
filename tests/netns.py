"""Hosts as Linux network namespaces, for scale-out tests: each host is a namespace joined to the root namespace by
its own veth pair (a /30 of 10.218.0.0/16 picked per run) and reaches the shared services (PostgreSQL, RabbitMQ, the
S3 emulator, all on the root namespace's loopback) only through TCP forwarders (tests/tcp_proxy.py) listening on the
root side's address of its pair. Nothing else is routed: the host's own 127.0.0.1 has none of the services.

Needs root and `ip netns`: skips locally without them, fails under CI (tests/services.py `unavailable`).
Everything made here (processes, forwarders, links, namespaces) is removed by `Network.close`, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from procs import GEOMILL, stop
from services import unavailable
from tcp_proxy import TcpProxy

SUBNET = "10.218"  # the test's own private range; a run takes 10.218.<random>.0/24, one /30 per host
SERVICES = {"postgres": ("127.0.0.1", 5432), "rabbitmq": ("127.0.0.1", 5672), "s3": ("127.0.0.1", 5000)}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def require_netns() -> None:
    """Root and a working `ip netns`, or skip (fail in CI)."""
    if shutil.which("ip") is None:
        unavailable("`ip` (iproute2) is not installed: the network namespace tests need it")
    if os.geteuid() != 0:
        unavailable("the network namespace tests need root (ip netns add, veth pairs)")
    if _ip("netns", "list", check=False).returncode != 0:
        unavailable("`ip netns` does not work here")


@dataclass
class Host:
    """One namespace: its veth pair, addresses, forwarders to the services, data folder and processes."""

    name: str
    namespace: str
    root_veth: str
    veth: str
    root_ip: str  # the forwarders listen here
    ip: str  # the host's own address
    data_dir: Path
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def address(self, service: str) -> str:
        """host:port of `service` as this host reaches it (its forwarder on the root side of its link)."""
        return f"{self.root_ip}:{self.proxies[service].port}"

    def exec_args(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *cmd]

    def run(self, env: dict[str, str], *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command inside the namespace, to its end."""
        return subprocess.run(self.exec_args(*cmd), env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def geomill(self, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(env, *GEOMILL, *args, timeout=timeout)

    def start(self, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
        """A long-running geomill process inside the namespace (its own process group), output to `log`."""
        out = log.open("ab")
        self.logs.append(out)
        proc = subprocess.Popen(self.exec_args(*GEOMILL, *args), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def link(self, up: bool) -> None:
        """Plug or pull this host's cable: the root side of its veth pair up or down (bytes in flight are lost,
        nothing is closed: a partition as both ends see it)."""
        _ip("link", "set", self.root_veth, "up" if up else "down")


class Network:
    """The hosts of one test; `close` removes everything it made."""

    def __init__(self, root: Path) -> None:
        require_netns()
        self.root = root
        self.token = uuid.uuid4().hex[:4]
        self.octet = self._free_octet()
        self.hosts: dict[str, Host] = {}

    @staticmethod
    def _free_octet() -> int:
        used = _ip("-o", "-4", "addr", "show").stdout
        for _ in range(50):
            octet = random.randrange(256)
            if f" {SUBNET}.{octet}." not in used:
                return octet
        raise RuntimeError(f"no free /24 in {SUBNET}.0.0/16")

    def add_host(self, name: str) -> Host:
        """A new namespace with its link up, lo up, its forwarders and an empty data folder."""
        index = len(self.hosts)
        prefix = f"{SUBNET}.{self.octet}"
        host = Host(name=name, namespace=f"geomill-{self.token}-{name}", root_veth=f"gm{self.token}{index}r",
                    veth=f"gm{self.token}{index}n", root_ip=f"{prefix}.{4 * index + 1}",
                    ip=f"{prefix}.{4 * index + 2}", data_dir=self.root / f"host-{name}")
        host.data_dir.mkdir(parents=True)
        self.hosts[name] = host  # registered first: close() removes whatever part of it was made
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.root_veth, "type", "veth", "peer", "name", host.veth, "netns", host.namespace)
        _ip("addr", "add", f"{host.root_ip}/30", "dev", host.root_veth)
        _ip("link", "set", host.root_veth, "up")
        for args in (["addr", "add", f"{host.ip}/30", "dev", host.veth], ["link", "set", host.veth, "up"],
                     ["link", "set", "lo", "up"]):
            _ip("-n", host.namespace, *args)
        for service, (target_host, port) in SERVICES.items():
            host.proxies[service] = TcpProxy(target_host, port, listen_host=host.root_ip)
        return host

    def close(self) -> None:
        """Stop every process (all at once, then wait), close the forwarders, delete the links and namespaces."""
        with contextlib.suppress(Exception):
            stop(*[p for h in self.hosts.values() for p in h.procs])
        for host in self.hosts.values():
            for proxy in host.proxies.values():
                with contextlib.suppress(Exception):
                    proxy.close()
            for log in host.logs:
                log.close()
            _ip("link", "del", host.root_veth, check=False)  # its peer goes with it
            _ip("netns", "del", host.namespace, check=False)
