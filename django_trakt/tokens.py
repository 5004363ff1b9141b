"""The stored links and their tokens, for a site's tasks and scripts.

What the management commands do, as functions: refresh the due links
(:func:`refresh_due_tokens`) or one link (:func:`refresh_token`, answering a
:class:`RefreshResult` whose ``outcome`` is an :class:`Outcome`), re-encrypt every token
with the first key (:func:`rotate_keys`), remove a link and revoke its grant at Trakt
(:func:`unlink`), or revoke without removing anything (:func:`revoke_at_trakt`).
"""

from __future__ import annotations

from django_trakt.internal.links.batch import refresh_due_tokens
from django_trakt.internal.links.outcomes import Outcome, RefreshResult
from django_trakt.internal.links.refresh import refresh_token
from django_trakt.internal.links.revocation import revoke_at_trakt, unlink
from django_trakt.internal.links.rotation import rotate_keys

__all__ = [
    "Outcome",
    "RefreshResult",
    "refresh_due_tokens",
    "refresh_token",
    "revoke_at_trakt",
    "rotate_keys",
    "unlink",
]
