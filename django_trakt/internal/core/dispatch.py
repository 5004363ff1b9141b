"""The seam through which the lower layers hand slow work to the site's task queue.

Pages, images and revocation must not import :mod:`django_trakt.tasks` (it sits above
them: it wires them to the queue). They ask this module instead: :func:`active` says
whether a task backend is set up (``TRAKT_TASK_BACKEND``), and :func:`enqueue` hands it
one piece of work by name, with ids and plain values only. ``django_trakt.tasks``
installs the real dispatcher when the app is ready; until then, and whenever it answers
False, the caller does the work in process, as it always did.
"""

from __future__ import annotations

from typing import Any, Protocol

#: The work the lower layers may hand over (names of tasks in ``django_trakt.tasks``).
REFRESH_LINK = "refresh_link"
REVALIDATE_WATCHLIST = "revalidate_watchlist"
STORE_IMAGE = "store_image"
REVOKE_GRANT = "revoke_grant"


class Dispatcher(Protocol):
    def active(self) -> bool:
        """Whether work should go to the queue at all (a usable backend is configured)."""

    def enqueue(self, name: str, *args: Any) -> bool:
        """Enqueue task ``name`` with ``args``; False when it could not be (do it in process)."""


class _InProcess:
    def active(self) -> bool:
        return False

    def enqueue(self, name: str, *args: Any) -> bool:
        return False


_dispatcher: Dispatcher = _InProcess()


def install(dispatcher: Dispatcher) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def active() -> bool:
    return _dispatcher.active()


def enqueue(name: str, *args: Any) -> bool:
    """Hand ``name(*args)`` to the queue; False: not queued, the caller does it itself."""
    return _dispatcher.enqueue(name, *args)
