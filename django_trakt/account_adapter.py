"""The account adapter django-trakt needs: it tells the links' trust model
(:mod:`django_trakt.internal.links.trust`) which address confirmations come from the confirmation mail.

allauth marks an address verified in two ways and announces both with the same
``email_confirmed`` signal: through the mail it sent to confirm that address (its link, or
its code), which goes through the adapter's documented ``confirm_email``; and on the way
through a code flow (a password reset or login by code), which does not. The first is the
owner accepting the Trakt accounts that mail names; the second is the owner taking the
account over. Only this hook tells them apart.

Use ``ACCOUNT_ADAPTER = "django_trakt.account_adapter.TraktAccountAdapter"``, or put
:class:`TraktAccountAdapterMixin` first in the bases of your own adapter (check ``E006``).
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress

from django_trakt.internal.links import trust


class TraktAccountAdapterMixin:
    """Mixin for a site's own ``DefaultAccountAdapter`` subclass (list it first)."""

    def confirm_email(self, request: Any, email_address: EmailAddress) -> bool:
        with trust.confirmation_by_receipt(email_address):
            return super().confirm_email(request, email_address)  # type: ignore[misc]


class TraktAccountAdapter(TraktAccountAdapterMixin, DefaultAccountAdapter):
    """allauth's default account adapter, with :class:`TraktAccountAdapterMixin`."""


__all__ = ["TraktAccountAdapter", "TraktAccountAdapterMixin"]
