"""HTTP mode: the WSGI app on a threaded ``wsgiref`` server, on loopback by default.

For the example site, browser tests and anything that is not ``requests`` in the
same process. One thread per request (tests hit it concurrently); the serving
thread is a daemon so a forgotten server never blocks interpreter exit.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from contextlib import ExitStack
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .protocols import ServedTarget

logger = logging.getLogger(__name__)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients at once (several test processes)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a test's short timeout) is normal here: log, don't print."""
        logger.debug("Connection from %s ended with an error", client_address, exc_info=True)


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Access log to ``logging`` (debug), not stderr; the query may hold a code."""

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
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: Undoes the emulator's base URLs pointing here, at stop().
        self._base_urls = ExitStack()

    def start(self) -> EmulatorServer:
        server_class = _IPv6ThreadingWSGIServer if ":" in self.host else _ThreadingWSGIServer
        self._httpd = make_server(
            self.host, self.port, self.emulator, server_class=server_class, handler_class=_QuietHandler
        )
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
