"""Encryption of stored Trakt tokens (Fernet, with MultiFernet for key rotation).

Keys come from ``TRAKT_TOKEN_KEYS`` (the first encrypts, every key decrypts). A site
without that setting gets keys derived from ``SECRET_KEY`` and
``SECRET_KEY_FALLBACKS`` with HKDF, so rotating the secret key the Django way keeps
tokens readable; a system check recommends a dedicated key all the same, because
rotating ``SECRET_KEY`` then also rotates the token key.

A token that does not decrypt raises :class:`TokenDecryptionError` whose ``reason``
says why, because the fix differs: a wrong key (put it back and the token works again)
or damaged ciphertext (only a new sign-in helps).
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError

# Changing this string changes every derived key: never edit it.
_DERIVATION_INFO = b"django-trakt token encryption v1"

# The layout of a Fernet token (its specification): version byte 0x80, 8-byte timestamp,
# 16-byte IV, AES-CBC ciphertext of n >= 1 blocks of 16 bytes, 32-byte HMAC-SHA256,
# the whole url-safe base64 encoded with padding.
_FERNET_VERSION = b"\x80"
_FERNET_HEADER = 1 + 8 + 16
_FERNET_HMAC = 32
_AES_BLOCK = 16
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")

_ADVICE = {
    TokenDecryptionError.WRONG_KEY: (
        "A stored Trakt token cannot be decrypted with any configured key (TRAKT_TOKEN_KEYS, or the keys derived "
        "from SECRET_KEY / SECRET_KEY_FALLBACKS): put the key that encrypted it back into TRAKT_TOKEN_KEYS "
        "(or, with derived keys, the old SECRET_KEY into SECRET_KEY_FALLBACKS)."
    ),
    TokenDecryptionError.CORRUPTED: (
        "A stored Trakt token cannot be decrypted: the stored ciphertext is damaged; "
        "the user must sign in with Trakt again."
    ),
}


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


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return get_fernet().encrypt(plaintext.encode()).decode("ascii")


@sensitive_variables()
def decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key; :class:`TokenDecryptionError` (with its ``reason``) if none fits."""
    try:
        return get_fernet().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as err:
        raise decryption_error(failure_reason(ciphertext)) from err


@sensitive_variables()
def reencrypt(ciphertext: str) -> str:
    """The same plaintext, encrypted with the current first key (for key rotation)."""
    try:
        return get_fernet().rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as err:
        raise decryption_error(failure_reason(ciphertext)) from err


def decryption_error(reason: str) -> TokenDecryptionError:
    """The error for a stored token that does not decrypt, with the advice that fits ``reason``."""
    return TokenDecryptionError(_ADVICE[reason], reason=reason)


def is_well_formed(ciphertext: str) -> bool:
    """Whether ``ciphertext`` has the layout of a Fernet token (whatever key made it)."""
    return _fernet_bytes(ciphertext) is not None


def _fernet_bytes(ciphertext: str) -> bytes | None:
    # Stricter than Fernet itself, which skips characters outside the alphabet: a stored
    # token is exactly what encrypt() wrote, anything else is damage.
    if len(ciphertext) % 4 or not _URLSAFE_BASE64.fullmatch(ciphertext):
        return None
    try:
        data = base64.urlsafe_b64decode(ciphertext)
    except (binascii.Error, ValueError):
        return None
    body = len(data) - _FERNET_HEADER - _FERNET_HMAC
    if not data.startswith(_FERNET_VERSION) or body < _AES_BLOCK or body % _AES_BLOCK:
        return None
    return data


def failure_reason(ciphertext: str) -> str:
    """Why ``ciphertext``, which did not decrypt, does not: a ``TokenDecryptionError`` reason.

    ``CORRUPTED`` when it is not a well-formed Fernet token, or when a configured key
    signed it and it still does not decrypt (only damage does that). ``WRONG_KEY`` when
    it is well-formed but no configured key's HMAC matches: most likely it was encrypted
    with a key that is no longer configured. Damage that keeps the layout intact (one
    character changed) looks the same from here; ``TraktToken`` tells the two apart with
    its other column (see ``TraktToken.decryption_errors``).
    """
    data = _fernet_bytes(ciphertext)
    if data is None:
        return TokenDecryptionError.CORRUPTED
    signed, signature = data[:-_FERNET_HMAC], data[-_FERNET_HMAC:]
    for key in configured_keys():
        # A Fernet key is the HMAC key (first 16 bytes) followed by the AES key.
        mac = HMAC(base64.urlsafe_b64decode(key)[:16], hashes.SHA256())
        mac.update(signed)
        try:
            mac.verify(signature)
        except InvalidSignature:
            continue
        return TokenDecryptionError.CORRUPTED
    return TokenDecryptionError.WRONG_KEY


#: Marks a token sealed for a place outside the token table: allauth's ``SocialToken`` of a
#: login in progress, which allauth serializes into the session for a pending signup.
SEALED_PREFIX = "django-trakt:sealed:"


@sensitive_variables()
def seal(value: str) -> str:
    """``value`` encrypted with the token keys, marked as such ("" stays "")."""
    return f"{SEALED_PREFIX}{encrypt(value)}" if value else ""


@sensitive_variables()
def unseal(value: str) -> str:
    """The plain value of :func:`seal`'s output; any other value is returned as it is."""
    if value.startswith(SEALED_PREFIX):
        return decrypt(value[len(SEALED_PREFIX) :])
    return value
