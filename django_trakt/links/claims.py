"""Account pre-hijacking: a Trakt signup with somebody else's address.

Trakt gives no email address, so allauth's signup form asks for one, and nothing proves
it belongs to the person signing up. Someone could sign in with their own Trakt account,
type another person's address, and wait: when that person later resets "their" password
and starts using the account, the first one's Trakt account still signs in to it.

The rule kept here: **a link made by a signup whose address nobody has confirmed is not
trusted with the account.**

- Such a link is marked (``TraktToken.email_unproven``) when the signup completes.
- The owner of the address claims the account by resetting its password through that
  address: every unproven Trakt link of the account is removed (and revoked at Trakt).
  The reset changes the password, which ends every other session of the account.
- Confirming the address through allauth's confirmation mail trusts the link: that mail
  names the Trakt account being linked (``account/email/email_confirmation_signup_message.txt``
  of this app; list ``django_trakt`` before ``allauth`` in ``INSTALLED_APPS`` so it is used),
  so whoever confirms knows which Trakt account they accept.

With ``ACCOUNT_EMAIL_VERIFICATION = "mandatory"`` (check ``W008``) such an account cannot
even be used before the confirmation.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.signals import email_confirmed, password_reset
from django.dispatch import receiver

from django_trakt.conf import PROVIDER_ID
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)


def mark_unproven_signup(user: Any, token: TraktToken) -> None:
    """``user`` was just created by the Trakt sign-in behind ``token``: mark the link if no
    address of the account is confirmed."""
    if EmailAddress.objects.filter(user=user, verified=True).exists():
        return
    token.email_unproven = True
    TraktToken.objects.filter(pk=token.pk).update(email_unproven=True)


@receiver(email_confirmed, dispatch_uid="django_trakt.trust_on_confirmation")
def _trust_on_confirmation(sender: Any, email_address: EmailAddress, **kwargs: Any) -> None:
    TraktToken.objects.filter(account__user_id=email_address.user_id, email_unproven=True).update(email_unproven=False)


@receiver(password_reset, dispatch_uid="django_trakt.unlink_on_claim")
def _unlink_on_claim(sender: Any, user: Any, **kwargs: Any) -> None:
    from django_trakt.links.revocation import unlink

    for token in TraktToken.objects.select_related("account").filter(
        account__user_id=user.pk, account__provider=PROVIDER_ID, email_unproven=True
    ):
        logger.warning(
            "The owner of the address of user %s reset its password: its unconfirmed Trakt link %s is removed",
            user.pk,
            token.account_id,
        )
        unlink(token.account)
