"""In-process mode: ``responses`` callbacks that hand each ``requests`` call to the WSGI app.

Unit tests then exercise the real client code (its headers, bodies, error handling)
against the same rules as the HTTP mode, without sockets or threads. ``responses``
is imported here only, so the rest of the package works without it.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .app import CLIENT_TIMEOUT_KEY, INPROCESS_KEY, decode_path
from .errors import EmulatedTimeout
from .protocols import InProcessTarget, WSGIApplication

if TYPE_CHECKING:
    import responses
    from requests import PreparedRequest

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def build_environ(request: PreparedRequest) -> dict[str, Any]:
    """A WSGI environ for a prepared ``requests`` request."""
    parts = urlsplit(request.url or "")
    body = request.body
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
    elif isinstance(body, bytes):
        data = body
    else:  # a file or generator body
        data = b"".join(chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in body)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": (request.method or "GET").upper(),
        "SCRIPT_NAME": "",
        "PATH_INFO": decode_path(parts.path or "/"),
        "QUERY_STRING": parts.query,
        "SERVER_NAME": parts.hostname or "localhost",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        INPROCESS_KEY: True,
        # The client's read timeout, so that a slow answer can time out as it would on the wire.
        CLIENT_TIMEOUT_KEY: _read_timeout(getattr(request, "req_kwargs", {}).get("timeout")),
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    environ.setdefault("HTTP_HOST", parts.netloc)
    return environ


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        timeout = timeout[-1]
    return float(timeout) if isinstance(timeout, (int, float)) else None


def call_app(emulator: WSGIApplication, request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
    """Run one request through the WSGI app; an emulated timeout becomes ``ReadTimeout``."""
    from requests.exceptions import ReadTimeout

    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = headers

    try:
        chunks = emulator(build_environ(request), start_response)
    except EmulatedTimeout:
        raise ReadTimeout(f"Emulated read timeout for {request.url}", request=request) from None
    body = b"".join(chunks)
    # The app never repeats a header name, so a dict (what responses' typing wants) loses nothing.
    headers = {name: value for name, value in captured["headers"] if name.lower() != "content-length"}
    return captured["status"], headers, body


def url_pattern(base_url: str) -> re.Pattern[str]:
    """Every URL under ``base_url`` (its own path, then anything), any query."""
    return re.compile(re.escape(base_url.rstrip("/")) + r"(?:[/?#].*)?\Z")


@contextmanager
def bind(emulator: InProcessTarget, rsps: responses.RequestsMock | None = None) -> Iterator[responses.RequestsMock]:
    """Register the emulator's callbacks on ``rsps`` (or a new, started mock).

    On exit the callbacks are removed from a mock we were given, and a mock we
    created is stopped; other URLs are left to ``responses`` (which refuses them).
    """
    import responses as responses_module

    own = rsps is None
    mock = responses_module.RequestsMock(assert_all_requests_are_fired=False) if own else rsps
    assert mock is not None

    def callback(request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return call_app(emulator, request)

    registered = [
        mock.add_callback(method, url_pattern(base), callback=callback, content_type=None)
        for base in emulator.base_urls()
        for method in METHODS
    ]
    if own:
        mock.start()
    try:
        yield mock
    finally:
        if own:
            mock.stop()
            mock.reset()
        else:
            for response in registered:
                mock.remove(response)
