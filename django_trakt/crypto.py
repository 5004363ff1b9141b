"""Encryption of stored Trakt tokens (Fernet, with MultiFernet for key rotation).

Keys come from ``TRAKT_TOKEN_KEYS`` (the first encrypts, every key decrypts). A site
without that setting gets keys derived from ``SECRET_KEY`` and
``SECRET_KEY_FALLBACKS`` with HKDF, so rotating the secret key the Django way keeps
tokens readable; a system check recommends a dedicated key all the same, because
rotating ``SECRET_KEY`` then also rotates the token key.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError

# Changing this string changes every derived key: never edit it.
_DERIVATION_INFO = b"django-trakt token encryption v1"


def derive_key(secret: str | bytes) -> bytes:
    """A Fernet key derived from a Django secret key (HKDF-SHA256)."""
    if isinstance(secret, str):
        secret = secret.encode()
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION_INFO).derive(secret)
    return base64.urlsafe_b64encode(raw)


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a usable Fernet key, or ``None`` when it is."""
    if not isinstance(key, (str, bytes)):
        return f"a key must be a string, not {type(key).__name__}"
    try:
        Fernet(key)
    except (ValueError, TypeError, binascii.Error):
        return "a key must be 32 url-safe base64-encoded bytes, as made by Fernet.generate_key()"
    return None


def uses_derived_keys() -> bool:
    return trakt_settings.TOKEN_KEYS is None


def configured_keys() -> tuple[bytes, ...]:
    """The keys in force, encryption key first."""
    keys = trakt_settings.TOKEN_KEYS
    if keys is None:
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        return tuple(derive_key(secret) for secret in secrets if secret)
    if not keys:
        raise TraktConfigurationError("TRAKT_TOKEN_KEYS is empty: give at least one Fernet key.")
    for position, key in enumerate(keys):
        problem = key_problem(key)
        if problem:
            # The message names the position only: the key itself is a secret.
            raise TraktConfigurationError(f"TRAKT_TOKEN_KEYS[{position}] is malformed: {problem}.")
    return tuple(key.encode() if isinstance(key, str) else key for key in keys)


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[bytes, ...]) -> MultiFernet:
    # Keyed on the keys themselves, so override_settings gets a fresh instance.
    return MultiFernet([Fernet(key) for key in keys])


def get_fernet() -> MultiFernet:
    return _fernet_for(configured_keys())


def encrypt(plaintext: str) -> str:
    return get_fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key; :class:`TokenDecryptionError` if none fits."""
    try:
        return get_fernet().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as err:
        raise TokenDecryptionError(
            "A stored Trakt token cannot be decrypted with any key in TRAKT_TOKEN_KEYS "
            "(or derived from SECRET_KEY / SECRET_KEY_FALLBACKS)."
        ) from err


def reencrypt(ciphertext: str) -> str:
    """The same plaintext, encrypted with the current first key (for key rotation)."""
    try:
        return get_fernet().rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as err:
        raise TokenDecryptionError("A stored Trakt token cannot be decrypted for rotation.") from err
