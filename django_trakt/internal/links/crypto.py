"""Encryption of stored Trakt tokens (Fernet, with MultiFernet for key rotation).

Keys come from ``TRAKT_TOKEN_KEYS`` (the first encrypts, every key decrypts). A site
without that setting gets keys derived from ``SECRET_KEY`` and
``SECRET_KEY_FALLBACKS`` with HKDF, so rotating the secret key the Django way keeps
tokens readable; a system check recommends a dedicated key all the same, because
rotating ``SECRET_KEY`` then also rotates the token key.

**The stored format is ours.** :func:`encrypt` writes an *envelope*,
``"<digest>:<Fernet token>"``: the digest is the url-safe base64 (unpadded) of the
first 16 bytes of the SHA-256 of the token. It is keyless and reveals nothing the
ciphertext does not; ``:`` is outside the base64 alphabet, so the split is unambiguous.
The digest says whether the stored value is exactly what we wrote; cryptography's
public API (``MultiFernet.decrypt``, ``Fernet.extract_timestamp``) says whether it opens,
and under which key. We never parse the Fernet token ourselves: cryptography owns that
format, and its leniency changes between releases (51 decrypts a token whose trailing
``=`` is missing, 46 and 50 refuse it), so a check of ours against the token's layout
would disagree with the library sooner or later.

A token that does not decrypt raises :class:`TokenDecryptionError` whose ``reason``
says why, because the fix differs: a wrong key (put it back and the token works again)
or damaged ciphertext (only a new sign-in helps). See :func:`failure_reason`.

Values written before the envelope (plain Fernet tokens) still decrypt; migration
``0006_envelope_token_ciphertext`` wrapped the stored ones, and :func:`reencrypt` (key
rotation) writes the envelope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError

# Changing this string changes every derived key: never edit it.
_DERIVATION_INFO = b"django-trakt token encryption v1"

#: Between the integrity digest and the Fernet token of a stored value.
ENVELOPE_SEPARATOR = ":"
_DIGEST_BYTES = 16

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


# -- the envelope ------------------------------------------------------------------------------


def integrity_digest(token: str) -> str:
    """The envelope's digest of ``token``: keyless, it only tells damage from what was written.

    Migration 0006 holds a frozen copy: change neither without a new migration.
    """
    digest = hashlib.sha256(token.encode("utf-8")).digest()[:_DIGEST_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def envelope(token: str) -> str:
    """A Fernet token as it is stored: ``"<digest>:<token>"``."""
    return f"{integrity_digest(token)}{ENVELOPE_SEPARATOR}{token}"


def _token_of(stored: str) -> tuple[str, bool]:
    """``(token, enveloped)``: the Fernet token inside ``stored`` (a value without envelope is
    its own token, as written before the envelope existed)."""
    digest, separator, token = stored.partition(ENVELOPE_SEPARATOR)
    return (token, True) if separator else (digest, False)


def _intact(stored: str) -> bool:
    """Whether ``stored`` is an envelope exactly as :func:`envelope` wrote it (always ASCII)."""
    token, enveloped = _token_of(stored)
    return enveloped and stored.isascii() and stored == envelope(token)


# -- encrypting and decrypting -----------------------------------------------------------------


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return envelope(get_fernet().encrypt(plaintext.encode()).decode("ascii"))


@sensitive_variables()
def decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key; :class:`TokenDecryptionError` (with its ``reason``) if none fits.

    ``ciphertext`` is a stored value: an envelope, or a plain Fernet token written before it.
    """
    token, enveloped = _token_of(ciphertext)
    # Damage is refused before cryptography sees the token: what a release of it
    # tolerates (a missing "=") must not decide whether a damaged value is used.
    if enveloped and not _intact(ciphertext):
        raise decryption_error(TokenDecryptionError.CORRUPTED)
    try:
        return get_fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as err:
        raise decryption_error(failure_reason(ciphertext)) from err


@sensitive_variables()
def reencrypt(ciphertext: str) -> str:
    """The same plaintext, encrypted with the current first key, in an envelope (key rotation).

    Refuses exactly what :func:`decrypt` refuses, with the same reason.
    """
    return encrypt(decrypt(ciphertext))


def is_current(ciphertext: str) -> bool:
    """Whether ``ciphertext`` needs no rotation: an intact envelope that the first key alone opens.

    Fernet tokens do not name their key, so "encrypted with the first key" can only mean this.
    """
    if not _intact(ciphertext):
        return False
    try:
        _fernet_for(configured_keys()[:1]).decrypt(_token_of(ciphertext)[0].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        return False
    return True


def decryption_error(reason: str) -> TokenDecryptionError:
    """The error for a stored token that does not decrypt, with the advice that fits ``reason``."""
    return TokenDecryptionError(_ADVICE[reason], reason=reason)


def failure_reason(ciphertext: str) -> str:
    """Why ``ciphertext``, a stored value that did not decrypt, does not: a ``TokenDecryptionError`` reason.

    - An envelope whose digest does not match its token: ``CORRUPTED`` (damaged since it
      was written, whatever cryptography would make of it).
    - A token that a configured key signed (``Fernet.extract_timestamp`` verifies the
      signature without decrypting) yet does not open, or opens to bytes that are not
      text: ``CORRUPTED``. We never write such a token; only damage or tampering does.
    - An intact envelope no configured key signed: ``WRONG_KEY``. It is what we wrote,
      under a key that is no longer configured.
    - Anything else, without an envelope: ``CORRUPTED``. Without parsing Fernet's
      format, a bare value cannot be told apart from garbage; since migration 0006 every
      stored value is an envelope, so a bare value that does not open is damage (or a
      value written before the migration whose key has since gone; it heals once that
      key is back).

    ``TraktToken`` refines ``WRONG_KEY`` with its other column (see ``TraktToken.diagnose``).
    """
    token, enveloped = _token_of(ciphertext)
    if enveloped and not _intact(ciphertext):
        return TokenDecryptionError.CORRUPTED
    if _signed_by_a_configured_key(token):
        return TokenDecryptionError.CORRUPTED
    return TokenDecryptionError.WRONG_KEY if enveloped else TokenDecryptionError.CORRUPTED


def _signed_by_a_configured_key(token: str) -> bool:
    try:
        data = token.encode("ascii")
    except UnicodeError:
        return False
    for key in configured_keys():
        try:
            Fernet(key).extract_timestamp(data)
        except InvalidToken:
            continue
        return True
    return False


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
