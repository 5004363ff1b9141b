"""An image fetch ends at ``IMAGE_TIMEOUT`` whatever the host does, and runs once per source.

A host that trickles a byte every few tenths of a second satisfies every per-read timeout;
the deadline is the whole fetch's and holds inside reads (issue 21): a trickled body or
trickled headers end at the deadline. These run through the real ``requests``/urllib3 stack
against a local TLS host (the test network and certificates of ``tests/test_image_ssrf.py``),
so the pinning is the one the site uses.

Twenty requests at once for a poster not stored yet make one download: the others get the
default poster, cached for a few seconds only, and the stored copy afterwards.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import responses
from django.core.cache import cache
from django.test import Client

from django_trakt.exceptions import ImageRefused
from django_trakt.internal.pages import image_fetch, image_views
from django_trakt.internal.pages.image_fetch import fetch_image
from django_trakt.testing.images import poster_png
from tests.test_image_ssrf import (  # noqa: F401  (fixtures)
    PUBLIC_A,
    certificates,
    is_default_poster,
    network,
    poster_path,
    serving_with_test_ca,
)

PNG = poster_png("trickled")
TIMEOUT = 1.0
#: Seconds between two bytes: far inside any per-read timeout.
TRICKLE = 0.1
#: What a fetch may take beyond the deadline: the refusal, closing, a loaded machine.
SLACK = 0.75


class TrickleHost(ThreadingHTTPServer):
    """A local https image host that sends its answer a byte at a time, ``TRICKLE`` seconds apart."""

    daemon_threads = True

    def __init__(self, cert_file, key_file) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.stopping = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        pass  # the fetch hangs up at its deadline: that is the point


class _TrickleHandler(BaseHTTPRequestHandler):
    server: TrickleHost

    def do_GET(self) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PNG)}\r\n\r\n".encode()
        if self.path == "/body.png":
            self.wfile.write(head + PNG[:8])  # the headers at once, then the body byte by byte
            self._trickle(PNG[8:])
        else:  # /head.png: even the status line and the headers trickle
            self._trickle(head + PNG)

    def _trickle(self, data: bytes) -> None:
        for index in range(len(data)):
            if self.server.stopping.wait(TRICKLE):
                return
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def trickle_host(certificates, network, monkeypatch, settings):  # noqa: F811
    ca_file, cert_file, key_file = certificates
    server = TrickleHost(cert_file, key_file)
    network.answers["img.trakt.test"] = [[PUBLIC_A]]
    network.route(PUBLIC_A, server)
    monkeypatch.setattr(image_fetch, "IMAGE_TIMEOUT", TIMEOUT)
    with serving_with_test_ca(server, ca_file, monkeypatch):
        try:
            yield server
        finally:
            server.stopping.set()  # trickling answers end before the server shuts down


@pytest.mark.parametrize("path", ["/body.png", "/head.png"], ids=["trickled-body", "trickled-headers"])
def test_a_trickling_host_is_cut_off_at_the_deadline(trickle_host, path):
    # Without the deadline inside reads this takes len(PNG) * TRICKLE seconds (many times TIMEOUT).
    assert len(PNG) * TRICKLE > 5 * TIMEOUT
    started = time.monotonic()
    with pytest.raises(ImageRefused, match="IMAGE_TIMEOUT"):
        fetch_image(f"https://img.trakt.test{path}")
    assert time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.django_db
def test_the_poster_view_of_a_trickling_host_answers_with_the_default_in_time(trickle_host, client):
    started = time.monotonic()
    response = client.get(poster_path("https://img.trakt.test/body.png"))
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert is_default_poster(response)


# -- one fetch per source at a time ----------------------------------------------------------------


@pytest.fixture
def slow_image_host(settings, tmp_path):
    """An image host (``responses``) taking half a second per answer, counting them."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = [".trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = lambda host: [PUBLIC_A]
    cache.clear()

    def answer(request):
        time.sleep(0.5)
        return 200, {"Content-Type": "image/png"}, PNG

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, "https://walter-r2.trakt.test/poster.png", callback=answer)
        yield rsps
    cache.clear()


def test_twenty_concurrent_requests_for_one_unstored_poster_make_one_fetch(slow_image_host):
    path = poster_path("https://walter-r2.trakt.test/poster.png")
    answers: list = [None] * 20
    ready = threading.Barrier(len(answers))

    def visit(index: int) -> None:
        ready.wait()
        answers[index] = Client().get(path)

    threads = [threading.Thread(target=visit, args=(index,)) for index in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(slow_image_host.calls) == 1
    fetched = [answer for answer in answers if answer.content == PNG]
    waiting = [answer for answer in answers if is_default_poster(answer)]
    assert len(fetched) == 1 and len(waiting) == 19
    # The default stands in briefly: the browser asks again soon and gets the stored poster.
    assert all(answer["Cache-Control"] == f"public, max-age={image_views.PENDING_MAX_AGE}" for answer in waiting)
    again = Client().get(path)
    assert again.content == PNG and len(slow_image_host.calls) == 1
