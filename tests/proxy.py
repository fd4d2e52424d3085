"""A TCP forwarder for outage tests: cut a client off a real service without touching the service.

Put a :class:`TcpProxy` between the code under test and a shared service (PostgreSQL, Redis, ...)
and point the code at ``127.0.0.1:proxy.port``. ``cut()`` resets every live connection and every
new one until ``restore()``; the service itself keeps running for everyone else.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

_CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), so the peer fails at once instead of seeing a clean EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes a pump blocked in recv(); sends nothing
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """A threaded TCP forwarder on 127.0.0.1 (ephemeral port) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, connect_timeout: float = 2.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._cut = False
        self._closed = False

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("TcpProxy not started")
        return int(self._listener.getsockname()[1])

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> TcpProxy:
        """Listen on an ephemeral port and start forwarding."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.1)  # so close() is noticed promptly
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="tcp-proxy-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def cut(self) -> None:
        """Reset every live connection; new ones are accepted and reset at once until restore()."""
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)

    def restore(self) -> None:
        """Forward new connections again (connections reset by cut() stay closed)."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed = True
        self.cut()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start() if self._listener is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self._cut:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                if self._cut:  # cut while we were connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.add(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        # One side finished or failed: end the whole connection (the protocols here are not
        # half-duplex), unless cut() already did.
        with self._lock:
            live = pair in self._pairs
            self._pairs.discard(pair)
        if live:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
