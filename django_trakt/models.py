"""The token store: one :class:`TraktToken` per linked Trakt account."""

from __future__ import annotations

import logging

from allauth.socialaccount.models import SocialAccount
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_trakt import crypto
from django_trakt.exceptions import TokenDecryptionError
from django_trakt.tokens import TokenGrant

logger = logging.getLogger(__name__)


class TraktTokenQuerySet(models.QuerySet["TraktToken"]):
    def store_grant(self, account: SocialAccount, grant: TokenGrant) -> TraktToken:
        """Write a fresh grant for ``account``: the link becomes active again.

        Used when a user signs in, signs up or connects: a new consent clears any
        "needs re-authorization" or "revoked" flag.
        """
        token, _created = self.get_or_create(account=account, defaults={"access_token_encrypted": ""})
        token.apply_grant(grant)
        token.status = TraktToken.Status.ACTIVE
        token.last_error = ""
        token.save()
        return token


class TraktToken(models.Model):
    """The Trakt tokens of one linked account, encrypted at rest.

    ``access_token`` and ``refresh_token`` are plain strings in Python and Fernet
    ciphertext in the database (``*_encrypted`` columns). They are properties, not
    fields, so nothing generic (``repr``, ``model_to_dict``, the admin, ``dumpdata``)
    ever sees the plain value.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        NEEDS_REAUTH = "needs_reauth", _("Needs re-authorization")
        REVOKED = "revoked", _("Revoked")
        UNREADABLE = "unreadable", _("Unreadable (wrong encryption key)")

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

    def _decrypt(self, ciphertext: str) -> str:
        if not ciphertext:
            return ""
        try:
            plaintext = crypto.decrypt(ciphertext)
        except TokenDecryptionError:
            self._flag_unreadable()
            raise
        if self.status == self.Status.UNREADABLE:
            self._clear_unreadable()
        return plaintext

    def _flag_unreadable(self) -> None:
        logger.error("Trakt token of account %s cannot be decrypted; check TRAKT_TOKEN_KEYS", self.account_id)
        self.status = self.Status.UNREADABLE
        self.last_error = str(_("The stored token cannot be decrypted with the configured keys."))
        if self.pk:
            type(self).objects.filter(pk=self.pk).update(status=self.status, last_error=self.last_error)

    def _clear_unreadable(self) -> None:
        # The right key is back: the link works again without asking the user.
        self.status = self.Status.ACTIVE
        self.last_error = ""
        if self.pk:
            type(self).objects.filter(pk=self.pk).update(status=self.status, last_error="")

    @property
    def access_token(self) -> str:
        return self._decrypt(self.access_token_encrypted)

    @access_token.setter
    def access_token(self, value: str) -> None:
        self.access_token_encrypted = crypto.encrypt(value) if value else ""

    @property
    def refresh_token(self) -> str:
        return self._decrypt(self.refresh_token_encrypted)

    @refresh_token.setter
    def refresh_token(self, value: str) -> None:
        self.refresh_token_encrypted = crypto.encrypt(value) if value else ""

    # -- lifecycle --------------------------------------------------------------------------

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
