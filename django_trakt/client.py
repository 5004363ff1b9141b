"""Calling Trakt from a site's own code: the public home of :class:`TraktClient`.

``TraktClient.for_user(user)`` calls Trakt with the user's token (refreshed when due);
``TraktClient()`` makes public calls with the app's key. Failures are the exceptions of
:mod:`django_trakt.exceptions`.
"""

from __future__ import annotations

from django_trakt.internal.links.client import TraktClient

__all__ = ["TraktClient"]
