"""The TCP proxy the outage tests rely on: forwards, cuts, restores."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_forwards_cuts_and_restores(echo_port: int) -> None:
    with TcpProxy("127.0.0.1", echo_port) as proxy:
        assert roundtrip(proxy.port) == b"ping"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"one")
        assert live.recv(16) == b"one"

        proxy.cut()
        assert proxy.is_cut
        with pytest.raises(OSError):  # the live connection is reset...
            live.sendall(b"two")
            if not live.recv(16):
                raise ConnectionResetError("closed")
        live.close()
        with pytest.raises(OSError):  # ...and so is every new one
            if not roundtrip(proxy.port):
                raise ConnectionResetError("closed")

        proxy.restore()
        assert roundtrip(proxy.port, b"back") == b"back"
