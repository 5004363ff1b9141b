"""The stored-ciphertext format, written from its documentation (``django_trakt.internal.links.crypto``):
``"<digest>:<Fernet token>"``, the digest being the url-safe base64, without padding, of the
first 16 bytes of the token's SHA-256.

Not imported from the app, so the tests check the format itself: a change to it fails them.
"""

from __future__ import annotations

import base64
import hashlib


def digest(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()[:16]).decode().rstrip("=")


def envelope(token: str | bytes) -> str:
    """``token`` (a Fernet token, or anything) as the app stores it."""
    if isinstance(token, bytes):
        token = token.decode()
    return f"{digest(token)}:{token}"


def opened(stored: str) -> str:
    """The Fernet token inside ``stored``, after checking that it is an intact envelope."""
    stored_digest, separator, token = stored.partition(":")
    assert separator and len(stored_digest) == 22 and stored_digest == digest(token)
    return token
