"""Which links an account trusts: account pre-hijacking through a Trakt link.

Trakt gives no email address, so allauth's signup form asks for one that nobody has proven.
The attack: sign up (with Trakt, or by form) typing a victim's address, link one's own Trakt
accounts, and wait until the victim takes "their" account over; the attacker's links (and
password, and sessions) still reach it.

The rule: **until the address typed at signup is confirmed by whoever receives it, the account
is unproven (an :class:`~django_trakt.models.UnprovenAccount` row), and so is every social
link it holds**, however it was made (signup, connect by redirect, linking by code, headless).

- *Proof*: the address is confirmed through allauth's confirmation mail (its link, or its code
  when ``ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED``). That mail names the account's Trakt
  accounts and says not to confirm otherwise (this app's ``account/email/
  email_confirmation_message.txt``), so confirming it accepts them: the row goes, every link
  is trusted. allauth routes exactly these confirmations through its adapter's
  ``confirm_email``; :class:`django_trakt.account_adapter.TraktAccountAdapterMixin` tells this
  module so (:func:`confirmation_by_receipt`). Confirming some *other* address proves nothing.
- *Claim*: the owner of the address takes the account over without that mail: a password
  reset (by link or by code), a login or reauthentication by code sent to the address, or
  allauth verifying the address on the way (its code flows do, before ``password_reset`` is
  sent). Every link is removed (revoked at Trakt), every other address of the account
  (added by whoever held it) is removed, the password of the unproven account is made
  unusable, which ends every other session (Django checks each session against the
  password's hash), and the account is proven.

allauth's order, per flow (65.21/65.22), and where each is caught:

======================================  ======================================================
confirmation link, or code (signup)     ``adapter.confirm_email`` -> ``email_confirmed``: proof
login / reauthentication by code        ``authentication_step_completed`` (``method="code"``,
                                        ``email``) -> ``email_confirmed`` -> login: claim at
                                        the first
password reset by code                  confirm the code: ``email_confirmed`` (not through the
                                        adapter): claim; set the password: ``password_reset``
password reset by link                  set the password -> ``password_reset``: claim
the admin's "mark verified"             ``email_confirmed`` by a staff member: proof
======================================  ======================================================

A password reset says which user, not which address: it proves the account only when the
typed address is the account's only one. Otherwise (the attacker added an address of their
own) it still removes every link and every other address, and the account stays unproven,
remembering the new password as the one a later claim makes unusable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.signals import (
    authentication_step_completed,
    email_confirmed,
    password_changed,
    password_reset,
    password_set,
    user_signed_up,
)
from allauth.account.utils import user_email
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import update_session_auth_hash
from django.dispatch import receiver
from django.utils.crypto import constant_time_compare, salted_hmac

from django_trakt.conf import PROVIDER_ID
from django_trakt.models import UnprovenAccount

logger = logging.getLogger(__name__)

#: ``(user id, address)`` being confirmed by allauth's confirmation mail (link or code), set
#: by the account adapter around allauth's ``confirm_email``.
_by_receipt: ContextVar[tuple[Any, str] | None] = ContextVar("django_trakt_confirmation_by_receipt", default=None)


def _same_address(first: str, second: str) -> bool:
    return first.strip().lower() == second.strip().lower()


def _password_digest(user: Any) -> str:
    # A keyed digest, so the table never holds a second copy of the password's hash.
    return salted_hmac("django_trakt.trust.password", user.password or "", algorithm="sha256").hexdigest()


@contextmanager
def confirmation_by_receipt(email_address: EmailAddress) -> Iterator[None]:
    """Around allauth's ``confirm_email``: this confirmation came through the mail sent to
    the address (its link, or its code), not through a flow that verifies it on the way."""
    marker = _by_receipt.set((email_address.user_id, email_address.email))
    try:
        yield
    finally:
        _by_receipt.reset(marker)


def note_signup(user: Any) -> UnprovenAccount | None:
    """``user`` was just created: unproven unless an address of it is already verified."""
    addresses = list(EmailAddress.objects.filter(user_id=user.pk).order_by("-primary", "pk"))
    if any(address.verified for address in addresses):
        return None
    typed = addresses[0].email if addresses else user_email(user)
    if not typed:
        return None  # no address: nobody can claim the account through one
    account, _created = UnprovenAccount.objects.update_or_create(
        user_id=user.pk, defaults={"email": typed, "password_digest": _password_digest(user)}
    )
    return account


def _prove(record: UnprovenAccount, why: str) -> None:
    logger.info("The account of user %s is proven (%s): its links are trusted", record.user_id, why)
    record.delete()


def _remove_links(user: Any) -> int:
    from django_trakt.internal.links.revocation import unlink

    removed = 0
    for account in SocialAccount.objects.filter(user_id=user.pk):
        if account.provider == PROVIDER_ID:
            unlink(account)  # revoked at Trakt, in process; link_revoked is sent
        else:
            account.delete()
        removed += 1
    return removed


def _keep_only_typed_address(user: Any, typed: str) -> None:
    addresses = list(EmailAddress.objects.filter(user_id=user.pk))
    kept = [address for address in addresses if _same_address(address.email, typed)]
    if not kept:
        return  # the typed address is gone: the claimant came through another one
    for address in addresses:
        if address not in kept:
            address.remove()
    if not kept[0].primary:
        kept[0].set_as_primary()


def claim(request: Any, user: Any, record: UnprovenAccount, *, proven: bool, why: str) -> None:
    """The owner of an address of ``user`` takes the unproven account over.

    Not one transaction: each link is removed (and revoked at Trakt) in its own, so a
    failure later on never leaves a link here that Trakt has already revoked.
    """
    removed = _remove_links(user)
    _keep_only_typed_address(user, record.email)
    user.refresh_from_db(fields=["password"])
    if not record.password_digest or constant_time_compare(record.password_digest, _password_digest(user)):
        # The password the unproven account had (typed by whoever held it), not one the
        # claimant has just set: unusable, and with it every session made under it.
        user.set_unusable_password()
        user.save(update_fields=["password"])
        current = getattr(request, "user", None)
        if current is not None and current.is_authenticated and current.pk == user.pk:
            update_session_auth_hash(request, user)  # the claimant's own session stays
    logger.warning(
        "The account of user %s was claimed through its address (%s): %d unproven link(s) removed",
        user.pk,
        why,
        removed,
    )
    if proven:
        _prove(record, why)
    else:
        record.password_digest = _password_digest(user)
        record.save(update_fields=["password_digest"])


def _record_of(user_id: Any) -> UnprovenAccount | None:
    return UnprovenAccount.objects.filter(user_id=user_id).first()


@receiver(user_signed_up, dispatch_uid="django_trakt.trust.note_signup")
def _on_signup(sender: Any, user: Any, **kwargs: Any) -> None:
    note_signup(user)


@receiver(email_confirmed, dispatch_uid="django_trakt.trust.on_confirmation")
def _on_confirmation(sender: Any, email_address: EmailAddress, request: Any = None, **kwargs: Any) -> None:
    record = _record_of(email_address.user_id)
    if record is None or not _same_address(email_address.email, record.email):
        return  # another address proves nothing about the typed one
    by_receipt = _by_receipt.get()
    if by_receipt is not None and by_receipt[0] == email_address.user_id and _same_address(by_receipt[1], record.email):
        _prove(record, "its signup address confirmed through the confirmation mail")
        return
    staff = getattr(request, "user", None)
    if staff is not None and staff.is_authenticated and staff.pk != email_address.user_id:
        # Someone else marked it verified (allauth's admin action): the site vouches for it.
        _prove(record, f"its signup address marked verified by user {staff.pk}")
        return
    # allauth verified the address on the way through a code flow (a password reset by code).
    claim(request, email_address.user, record, proven=True, why="a code sent to its signup address")


@receiver(authentication_step_completed, dispatch_uid="django_trakt.trust.on_code")
def _on_authentication(sender: Any, request: Any, user: Any, method: str, **kwargs: Any) -> None:
    email = kwargs.get("email")
    if method != "code" or not email:
        return
    record = _record_of(user.pk)
    if record is not None and _same_address(email, record.email):
        claim(request, user, record, proven=True, why="a login code sent to its signup address")


@receiver(password_reset, dispatch_uid="django_trakt.trust.on_reset")
def _on_reset(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record = _record_of(user.pk)
    if record is None:
        return
    addresses = {address.email.lower() for address in EmailAddress.objects.filter(user_id=user.pk)}
    only_typed = addresses <= {record.email.lower()} and _same_address(user_email(user) or record.email, record.email)
    claim(request, user, record, proven=only_typed, why="a password reset")


@receiver(password_changed, dispatch_uid="django_trakt.trust.on_password_changed")
@receiver(password_set, dispatch_uid="django_trakt.trust.on_password_set")
def _on_password(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Whoever holds the unproven account chose this password: a claim makes it unusable.
    UnprovenAccount.objects.filter(user_id=user.pk).update(password_digest=_password_digest(user))
