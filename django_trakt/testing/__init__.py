"""A faithful local Trakt for testing sites that use django-trakt.

No Django here: plain Python and ``requests`` (``responses`` only for in-process
mode). The public API is small:

``TraktEmulator``
    The emulated Trakt: state, fixtures (``add_app``, ``add_user``,
    ``add_watchlist_item``, ``issue_tokens``...), failure injection
    (``fail_next``, ``rate_limit_next``, ``timeout_next``, ``cloudflare_next``,
    ``malformed_next``), introspection (``requests``, ``refresh_events``,
    ``revoked_tokens``), and the two ways to run it: ``with emulator.mock():``
    (in-process, via ``responses``) and ``emulator.serve()`` (loopback HTTP).
``EmulatedUser``
    A Trakt account; tests may edit it (``omit_uuid``, ``avatar_url``...).
``RecordedRequest``
    One request the emulator received.
``serve``
    Shortcut: ``serve(emulator, host, port)`` is ``emulator.serve(host, port)``.

Run ``python -m django_trakt.testing --help`` for a standalone server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .emulator import TraktEmulator
from .state import EmulatedUser, RecordedRequest

if TYPE_CHECKING:
    from .server import EmulatorServer

__all__ = ["EmulatedUser", "RecordedRequest", "TraktEmulator", "serve"]


def serve(
    emulator: TraktEmulator, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None
) -> EmulatorServer:
    """Start ``emulator`` on a loopback HTTP server (see ``TraktEmulator.serve``)."""
    return emulator.serve(host, port, public_url=public_url)
