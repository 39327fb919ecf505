"""A TCP proxy (on loopback unless told) for outage tests: forwards to a server until black-holed (bytes are held,
nothing is closed: a network partition as an application sees it) or cut (every connection closed, new ones
refused). The network-namespace tests also run one per host and service on the root side of a veth pair."""

from __future__ import annotations

import select
import socket
import threading
import time


class TcpProxy:
    """Listens on <listen_host>:<port> (127.0.0.1 unless told; a free port) and forwards each connection to
    (host, port)."""

    def __init__(self, host: str, port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self.listen_host = listen_host
        self.flowing = threading.Event()
        self.flowing.set()
        self.delay = 0.0  # seconds added before each forwarded chunk: a slow link
        self.forwarded = 0  # bytes forwarded so far, both directions (tells a test that an upload is under way)
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server((listen_host, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """`url` (postgresql://... or amqp://...) with its host:port replaced by this proxy's."""
        host_port = f"{self.target[0]}:{self.target[1]}"
        assert host_port in url, (host_port, url)
        return url.replace(host_port, f"{self.listen_host}:{self.port}")

    def blackhole(self) -> None:
        """Stop forwarding in both directions without closing anything; new connections are accepted and hang."""
        self.flowing.clear()

    def cut(self) -> None:
        """Close every connection and refuse new ones until `restore`."""
        self._cut.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self._cut.clear()
        self.flowing.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()  # black-holed: the handshake hangs like the rest
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._socks += [client, server]
        threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                if not self.flowing.is_set():
                    time.sleep(0.05)  # held: neither read nor closed
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready or not self.flowing.is_set():  # black-holed while waiting: hold what arrived
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
                self.forwarded += len(data)
        except (OSError, ValueError):  # ValueError: select on a socket `cut` closed meanwhile (fd -1)
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
