"""A TCP forwarder a test can cut: a real network fault between kmlp and its database.

``TcpProxy(host, port)`` listens on 127.0.0.1 (a free port) and forwards every connection
to ``host:port``. A test points kmlp at ``proxy.url(database_url)`` and then:

- ``cut()`` / ``restore()``: resets every open connection and refuses new ones (accepted
  and reset at once) until restored, as a database failover or a cable pull would;
- ``cut_for(seconds)``: cut now, restore by itself after ``seconds`` (in the background);
- ``drop_after(b"COMMIT")``: the next client message containing the bytes is forwarded,
  and the connection is reset as soon as the server answers, before the client sees the
  answer: the server has acted (committed) but the client cannot know.

One thread serves all connections with ``selectors``. Used by the storage tests and by
the load and fault kit; it runs in the test process, the processes under test connect to
it over TCP.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from types import TracebackType

import sqlalchemy.engine

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0), as a dropped connection looks to the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port`` until stopped."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._armed: set[socket.socket] = set()  # server sockets whose next reply is dropped
        self._drop_pattern: bytes | None = None
        self._guard = threading.Lock()
        self._cut = False
        self._stop = False
        self.accepted = 0
        self.resets = 0
        self.drops = 0
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()

    # --- control ------------------------------------------------------------------

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy in front of the server of SQLAlchemy ``url``."""
        parsed = sqlalchemy.engine.make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's (password kept)."""
        parsed = sqlalchemy.engine.make_url(url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def cut(self) -> None:
        """Reset every connection and refuse new ones until ``restore()``."""
        with self._guard:
            self._cut = True
            for sock in list(self._peers):
                self._close_pair(sock)

    def restore(self) -> None:
        with self._guard:
            self._cut = False

    def cut_for(self, seconds: float) -> threading.Thread:
        """Cut now and restore after ``seconds``; returns the restoring thread."""
        self.cut()

        def later() -> None:
            time.sleep(seconds)
            self.restore()

        thread = threading.Thread(target=later, name="tcp-proxy-restore", daemon=True)
        thread.start()
        return thread

    def drop_after(self, pattern: bytes) -> None:
        """Reset the connection that next sends ``pattern``, once the server answers it."""
        with self._guard:
            self._drop_pattern = pattern

    @property
    def open_connections(self) -> int:
        with self._guard:
            return len(self._peers) // 2

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        with self._guard:
            for sock in list(self._peers):
                self._close_pair(sock)
        self._selector.close()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the loop -----------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with self._guard:
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._peers:
                        self._forward(sock, is_server=key.data == "server")

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if self._cut:
            self.resets += 1
            _reset(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock, role in ((client, "client"), (server, "server")):
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ, role)
        self._peers[client] = server
        self._peers[server] = client

    def _forward(self, sock: socket.socket, *, is_server: bool) -> None:
        try:
            data = sock.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock)
            return
        other = self._peers[sock]
        if is_server and sock in self._armed:
            # The server answered the armed message: it has acted; the client never hears.
            self.drops += 1
            self._close_pair(sock)
            return
        if not is_server and self._drop_pattern is not None and self._drop_pattern in data:
            self._armed.add(other)
            self._drop_pattern = None
        try:
            other.sendall(data)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            self._armed.discard(s)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            self.resets += 1
            _reset(s)
