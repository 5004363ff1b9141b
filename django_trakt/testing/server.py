"""HTTP mode: the WSGI app on a threaded ``wsgiref`` server, on loopback by default.

For the example site, browser tests and anything that is not ``requests`` in the
same process. One thread per connection (tests hit it concurrently); the serving
thread is a daemon so a forgotten server never blocks interpreter exit.

Connections are kept alive (HTTP/1.1), as Trakt's (behind Cloudflare) are: a client that
reuses its connections is measured as it runs against Trakt, not paying a TCP handshake and
a server thread per request that it would not pay there. ``stop()`` closes the connections
still open, so nothing is answered by a stopped server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from contextlib import ExitStack
from types import TracebackType
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from .protocols import ServedTarget

logger = logging.getLogger(__name__)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients at once (several test processes)

    def server_activate(self) -> None:
        super().server_activate()
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.open_connections.discard(request)

    def close_open_connections(self) -> None:
        """End every kept-alive connection: its thread's next read finds the end and returns."""
        with self.connections_lock:
            for connection in self.open_connections:
                with contextlib.suppress(OSError):  # the client closed it already
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a test's short timeout) is normal here: log, don't print."""
        logger.debug("Connection from %s ended with an error", client_address, exc_info=True)


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _RequestBody:
    """A request's body as ``wsgi.input``: at most ``Content-Length`` bytes of the connection.

    On a kept-alive connection the next request starts right after this body, so an answer
    that did not read it all (an error answered early) must not leave it there: see
    :meth:`drain`.
    """

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = max(0, length)

    def read(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.read(size) if size else b""
        self._left -= len(data)
        if size and not data:
            self._left = 0  # the client closed the connection mid-body
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.readline(size) if size else b""
        self._left -= len(data)
        return data

    def drain(self) -> None:
        while self._left and self.read(64 * 1024):
            pass


class _HTTP11Handler(ServerHandler):
    http_version = "1.1"
    request_handler: WSGIRequestHandler
    headers: Any  # wsgiref.headers.Headers, from start_response on
    #: Whether the answer said its length (wsgiref forgets its headers once it has answered).
    length_sent = False

    def send_preamble(self) -> None:
        self.length_sent = self.headers is not None and "Content-Length" in self.headers
        super().send_preamble()


class _QuietHandler(WSGIRequestHandler):
    """Requests on kept-alive connections; access log to ``logging`` (debug), not stderr (the
    query may hold a code)."""

    protocol_version = "HTTP/1.1"
    # wsgiref writes the head and the body of an answer apart: with Nagle's algorithm on, the
    # body would wait for the client's delayed ACK of the head (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    #: Seconds an idle kept-alive connection waits for its next request before it is closed.
    timeout = 60

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:
            return  # idle too long, or closed by stop()
        if not self.raw_requestline:
            return  # the client closed the connection
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():  # answered with an error; close_connection is set
            return
        environ = self.get_environ()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            self.send_error(400, "Bad Content-Length")
            self.close_connection = True
            return
        body = _RequestBody(self.rfile, length)
        answer: Any = self.wfile  # a writable binary stream; typeshed's ServerHandler wants IO[bytes]
        handler = _HTTP11Handler(body, answer, self.get_stderr(), environ, multithread=True)  # type: ignore[arg-type]
        handler.request_handler = self  # wsgiref logs the request through it
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        if not handler.length_sent:
            # No length: the answer's end is the connection's (the app always sends one).
            self.close_connection = True
        else:
            body.drain()
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.command, self.path.split("?", 1)[0])


class EmulatorServer:
    """A running emulator server: ``url``, ``stop()``, and a context manager.

    While it runs, the emulator's base URLs (auth, API, web, images) are its own
    URL, so absolute URLs the emulator builds (avatars, ``verification_url``)
    point back at it; ``stop()`` restores them.
    """

    def __init__(
        self, emulator: ServedTarget, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.url = ""
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: Undoes the emulator's base URLs pointing here, at stop().
        self._base_urls = ExitStack()

    def start(self) -> EmulatorServer:
        server_class = _IPv6ThreadingWSGIServer if ":" in self.host else _ThreadingWSGIServer
        httpd = make_server(self.host, self.port, self.emulator, server_class=server_class, handler_class=_QuietHandler)
        assert isinstance(httpd, _ThreadingWSGIServer)
        self._httpd = httpd
        self.port = self._httpd.server_port
        wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped, not bound
        shown = wildcard.get(self.host, self.host)
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = self.public_url or f"http://{shown}:{self.port}"
        self._base_urls.enter_context(self.emulator.answering_at(self.url))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() returns quickly
            name=f"trakt-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Trakt emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close the socket, restore the emulator's base URLs."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._base_urls.close()
        logger.info("Trakt emulator on port %s stopped", self.port)

    def wait(self) -> None:
        """Block until the server stops (the CLI's main loop)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
