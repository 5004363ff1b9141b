"""The token store: one :class:`TraktToken` per linked Trakt account."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from django_trakt.exceptions import TokenDecryptionError
from django_trakt.internal.api.tokens import TokenGrant
from django_trakt.internal.links import crypto

logger = logging.getLogger(__name__)

#: The two ciphertext columns, in the order ``TraktToken.diagnose`` takes them.
_COLUMNS = ("access_token_encrypted", "refresh_token_encrypted")


class TraktTokenQuerySet(models.QuerySet["TraktToken"]):
    @sensitive_variables()
    def store_grant(self, account: SocialAccount, grant: TokenGrant) -> TraktToken:
        """Write a fresh grant for ``account``: the link becomes active again.

        Used when a user signs in, signs up or connects: a new consent clears any
        "needs re-authorization" or "revoked" flag.
        """
        token, _created = self.get_or_create(account=account, defaults={"access_token_encrypted": ""})
        token.apply_grant(grant)
        token.status = TraktToken.Status.ACTIVE
        token.last_error = ""
        # A new grant: whatever a refresh of the old one left behind no longer matters.
        token.refresh_claimed_by, token.refresh_claimed_at, token.refresh_claim_until = "", None, None
        token.save()
        return token


class TraktToken(models.Model):
    """The Trakt tokens of one linked account, encrypted at rest.

    ``access_token`` and ``refresh_token`` are plain strings in Python and Fernet
    ciphertext in the database (``*_encrypted`` columns, in the envelope of
    :mod:`django_trakt.internal.links.crypto`). They are properties, not
    fields, so nothing generic (``repr``, ``model_to_dict``, the admin, ``dumpdata``)
    ever sees the plain value.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        NEEDS_REAUTH = "needs_reauth", _("Needs re-authorization")
        REVOKED = "revoked", _("Revoked")
        UNREADABLE = "unreadable", _("Unreadable (wrong encryption key)")
        CORRUPTED = "corrupted", _("Corrupted (stored ciphertext is damaged)")

    #: The statuses decryption sets, and clears (back to ACTIVE) once both columns
    #: decrypt. Every other flag (NEEDS_REAUTH, REVOKED) is a fact about the link that
    #: reading the token cannot change: only a new grant clears it.
    DECRYPTION_FLAGS = frozenset({Status.UNREADABLE, Status.CORRUPTED})

    #: ``last_error`` of the decryption flags: short enough for the admin's list, and
    #: each with the advice that fits (a key can fix one, only a new sign-in the other).
    DECRYPTION_ERRORS = {
        Status.UNREADABLE: _("No configured key decrypts the stored token: put its key back into TRAKT_TOKEN_KEYS."),
        Status.CORRUPTED: _("The stored token is damaged: the user must sign in with Trakt again."),
    }

    account = models.OneToOneField(
        SocialAccount,
        on_delete=models.CASCADE,
        related_name="trakt_token",
        verbose_name=_("social account"),
    )
    access_token_encrypted = models.TextField(_("access token (encrypted)"), editable=False)
    refresh_token_encrypted = models.TextField(_("refresh token (encrypted)"), blank=True, editable=False)
    token_type = models.CharField(_("token type"), max_length=32, default="bearer")
    scope = models.CharField(_("scope"), max_length=255, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.ACTIVE)
    last_refreshed_at = models.DateTimeField(_("last refreshed at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    #: The refresh claim (django_trakt.internal.links.durability): committed before a refresh token is
    #: sent to Trakt, cleared when Trakt's answer is stored. While it stands nobody else sends
    #: the token; once past ``refresh_claim_until`` with the claim still there, its owner never
    #: stored an answer, and the link is checked instead of the token being sent again.
    refresh_claimed_by = models.CharField(_("refresh claimed by"), max_length=200, blank=True, editable=False)
    refresh_claimed_at = models.DateTimeField(_("refresh claimed at"), null=True, blank=True, editable=False)
    refresh_claim_until = models.DateTimeField(_("refresh claim until"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TraktTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("Trakt token")
        verbose_name_plural = _("Trakt tokens")
        indexes = [
            # The refresh command's query: active links ordered by expiry.
            models.Index(fields=["status", "expires_at"], name="django_trakt_status_expiry"),
        ]

    def __str__(self) -> str:
        return f"Trakt token for account {self.account_id} ({self.status})"

    # -- plain values, encrypted at rest -------------------------------------------------

    @sensitive_variables()
    def _decrypt(self, column: str) -> str:
        ciphertext: str = getattr(self, column)
        if not ciphertext:
            return ""
        try:
            plaintext = crypto.decrypt(ciphertext)
        except TokenDecryptionError as err:
            # The pair says more than this column alone: it is damaged, not encrypted with
            # a missing key, when the other column decrypts (see diagnose).
            failure = self.check_decryption().get(column, err)
            if failure is err:
                raise
            raise failure from failure.__cause__
        if self.status in self.DECRYPTION_FLAGS:
            # One readable column proves nothing about the other: heal only if both decrypt.
            self.check_decryption()
        return plaintext

    @property
    @sensitive_variables()
    def access_token(self) -> str:
        return self._decrypt("access_token_encrypted")

    @access_token.setter
    @sensitive_variables()
    def access_token(self, value: str) -> None:
        self.access_token_encrypted = crypto.encrypt(value) if value else ""

    @property
    @sensitive_variables()
    def refresh_token(self) -> str:
        return self._decrypt("refresh_token_encrypted")

    @refresh_token.setter
    @sensitive_variables()
    def refresh_token(self, value: str) -> None:
        self.refresh_token_encrypted = crypto.encrypt(value) if value else ""

    # -- decryption flags: the one place where decryption changes the status ----------------

    @staticmethod
    def diagnose(access_encrypted: str, refresh_encrypted: str) -> dict[str, TokenDecryptionError]:
        """Why each stored column does not decrypt, by column name; empty when both do.

        Writes nothing. An empty column (no refresh token stored) counts as decrypting. A
        column that looks like a wrong key's (an intact value no configured key signed)
        while the other one decrypts is damaged rather than encrypted with a missing key:
        both are written, and rotated, together, so the configured keys evidently include
        the right one. (The exception: a grant without a
        refresh token keeps the old one, which may then be under an older key; if that key
        was removed, the link is flagged CORRUPTED and heals once the key is back.)
        """
        errors: dict[str, TokenDecryptionError] = {}
        readable = False
        for column, ciphertext in zip(_COLUMNS, (access_encrypted, refresh_encrypted), strict=True):
            if not ciphertext:
                continue
            try:
                crypto.decrypt(ciphertext)
            except TokenDecryptionError as err:
                errors[column] = err
            else:
                readable = True
        if readable:
            for column, failure in errors.items():
                if not failure.corrupted:
                    damaged = crypto.decryption_error(TokenDecryptionError.CORRUPTED)
                    damaged.__cause__ = failure
                    errors[column] = damaged
        return errors

    @classmethod
    def decryption_status(cls, errors: Mapping[str, TokenDecryptionError]) -> Status | None:
        """The flag ``errors`` (from :meth:`diagnose`) call for; ``None`` when both columns decrypt."""
        if not errors:
            return None
        if any(err.corrupted for err in errors.values()):
            return cls.Status.CORRUPTED
        return cls.Status.UNREADABLE

    @classmethod
    def checked_state(cls, status: str, last_error: str, errors: Mapping[str, TokenDecryptionError]) -> tuple[str, str]:
        """The ``(status, last_error)`` a link has once both its columns were tried.

        Flags are facts. NEEDS_REAUTH and REVOKED (any status but ACTIVE and the decryption
        flags) are kept as they are, with their ``last_error``: Trakt's verdict or the site's
        does not depend on our keys, and only a new grant clears it. UNREADABLE and
        CORRUPTED heal to ACTIVE only when both columns decrypt. A damaged column flags
        CORRUPTED; otherwise a failure flags UNREADABLE, except over CORRUPTED: a wrong key
        cannot show that the damage seen with the right one has gone.
        """
        if status != cls.Status.ACTIVE and status not in cls.DECRYPTION_FLAGS:
            return status, last_error
        flag = cls.decryption_status(errors)
        if flag is None:
            return (cls.Status.ACTIVE, "") if status in cls.DECRYPTION_FLAGS else (status, last_error)
        if flag == cls.Status.UNREADABLE and status == cls.Status.CORRUPTED:
            return status, last_error
        return flag, str(cls.DECRYPTION_ERRORS[flag])

    @classmethod
    def log_decryption_state(cls, account_id: Any, status: str) -> None:
        """Say what a link's decryption state means for the operator (reads and key rotation)."""
        if status == cls.Status.CORRUPTED:
            logger.error(
                "Trakt token of account %s is damaged (its ciphertext does not decrypt with the right key); "
                "the user must sign in with Trakt again",
                account_id,
            )
        elif status == cls.Status.UNREADABLE:
            logger.error("Trakt token of account %s cannot be decrypted; check TRAKT_TOKEN_KEYS", account_id)
        else:
            logger.info("Trakt token of account %s decrypts again; the link is active", account_id)

    def check_decryption(self) -> dict[str, TokenDecryptionError]:
        """Try both columns, flag or heal the link to match (saved if it is), and return :meth:`diagnose`'s errors."""
        errors = self.diagnose(self.access_token_encrypted, self.refresh_token_encrypted)
        status, last_error = self.checked_state(self.status, self.last_error, errors)
        if (status, last_error) == (self.status, self.last_error):
            return errors
        self.log_decryption_state(self.account_id, status)
        previous = self.status
        self.status, self.last_error = status, last_error
        if self.pk:
            # Only over the status this decision was made from: a flag another process set
            # meanwhile (Trakt rejected the refresh token: NEEDS_REAUTH) is never overwritten.
            rows = type(self).objects.filter(pk=self.pk, status=previous)
            if not rows.update(status=status, last_error=last_error):
                current = type(self).objects.filter(pk=self.pk).values_list("status", "last_error").first()
                if current is not None:
                    self.status, self.last_error = current
        return errors

    # -- lifecycle --------------------------------------------------------------------------

    @sensitive_variables()
    def apply_grant(self, grant: TokenGrant) -> None:
        """Take the values of a new grant (not saved).

        Trakt's refresh tokens rotate, but if an answer ever lacks one the stored
        refresh token is kept rather than wiped.
        """
        self.access_token = grant.access_token
        if grant.refresh_token:
            self.refresh_token = grant.refresh_token
        self.token_type = grant.token_type
        self.scope = grant.scope
        self.expires_at = grant.expires_at

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class PendingGrant(models.Model):
    """A token Trakt issued at a sign-in that no link holds yet (see :mod:`django_trakt.internal.links.pending`).

    A new user's tokens wait in allauth's pending signup until the email form is sent; if it
    never is, the grant would stay live at Trakt for good. Each one is noted here (encrypted,
    found by a digest) until a link stores it, and revoked at Trakt once abandoned.
    """

    digest = models.CharField(_("digest"), max_length=64, unique=True, editable=False)
    access_token_encrypted = models.TextField(_("access token (encrypted)"), editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    #: When it was revoked as abandoned; a signup finished after that gets a flagged link.
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("pending Trakt grant")
        verbose_name_plural = _("pending Trakt grants")

    def __str__(self) -> str:
        return f"Pending Trakt grant {self.pk} ({'revoked' if self.revoked_at else 'waiting'})"


class UnprovenAccount(models.Model):
    """An account whose signup address nobody has confirmed yet (see :mod:`django_trakt.internal.links.trust`).

    Trakt gives no email address, so the one typed at signup may be somebody else's. While
    this row exists, no link of the account is trusted with it: the owner of ``email`` who
    claims the account (a password reset, a code sent to that address) removes them all.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
        verbose_name=_("user"),
    )
    #: The address typed at signup: only its owner's confirmation proves the account.
    email = models.EmailField(_("address typed at signup"), max_length=254)
    #: A keyed digest (never the hash itself) of the password the account had while
    #: unproven: a claim makes that password unusable, not one its claimant just set.
    password_digest = models.CharField(_("digest of the unproven password"), max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("account with an unconfirmed signup address")
        verbose_name_plural = _("accounts with an unconfirmed signup address")

    def __str__(self) -> str:
        return f"Unproven account of user {self.user_id}"
