"""Account pre-hijacking: someone signs up through their own Trakt account with another
person's address; the owner of the address claims the account (django_trakt.links.claims)."""

from __future__ import annotations

import re

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from django_trakt.models import TraktToken
from tests.test_signin import sign_in, signup_form

pytestmark = pytest.mark.django_db

User = get_user_model()
VICTIM = "bob@example.com"


def reset_password(client: Client, email: str, password: str = "a-new-Passw0rd!") -> None:  # noqa: S107
    """The owner of ``email`` resets the account's password through allauth's mail."""
    mail.outbox.clear()
    assert client.post(reverse("account_reset_password"), {"email": email}).status_code == 302
    (message,) = mail.outbox
    (link,) = re.findall(r"http://testserver(/accounts/password/reset/key/\S+)", message.body)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(form.redirect_chain[-1][0], {"password1": password, "password2": password})
    assert done.status_code == 302, done.content[:500]


def signed_in_user_id(client: Client):
    return client.session.get("_auth_user_id")


def test_the_owner_of_the_address_claims_it_and_the_attackers_trakt_no_longer_reaches_it(trakt):
    trakt.add_user("Mallory")
    attacker = Client()
    signup_form(attacker, sign_in(attacker, trakt, username="Mallory"), email=VICTIM, username="bob")
    account = User.objects.get(email=VICTIM)
    mallory_token = TraktToken.objects.get(account__user=account)
    assert mallory_token.email_unproven
    mallory_access = mallory_token.access_token
    assert signed_in_user_id(attacker) == str(account.pk)  # Mallory is in, for now

    victim = Client()
    reset_password(victim, VICTIM)
    # The unconfirmed Trakt link is gone, and revoked at Trakt.
    assert not SocialAccount.objects.filter(user=account).exists()
    assert not trakt.is_access_token_valid(mallory_access)
    # Mallory's session ended with the new password.
    assert attacker.get(reverse("account_email")).status_code == 302
    assert signed_in_user_id(attacker) is None

    # Mallory signs in with Trakt again: not into Bob's account.
    response = sign_in(attacker, trakt, username="Mallory")
    assert signed_in_user_id(attacker) != str(account.pk)
    assert response["Location"] == reverse("socialaccount_signup")
    # Bob's new password works, and his account is his.
    assert victim.login(username="bob", password="a-new-Passw0rd!")


def test_a_confirmed_address_trusts_the_link_and_a_later_reset_keeps_it(trakt):
    client = Client()
    mail.outbox.clear()
    signup_form(client, sign_in(client, trakt), email="wanda@example.com")
    (confirmation,) = mail.outbox  # allauth sends one at signup ("optional" verification too)
    (link,) = re.findall(r"http://testserver(/accounts/confirm-email/\S+)", confirmation.body)
    client.post(link)
    token = TraktToken.objects.get()
    token.refresh_from_db()
    assert not token.email_unproven
    client.logout()
    reset_password(Client(), "wanda@example.com")
    assert TraktToken.objects.filter(pk=token.pk, status=TraktToken.Status.ACTIVE).exists()


def test_the_confirmation_mail_names_the_trakt_account_being_linked(trakt, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    trakt.add_user("Mallory")
    client = Client()
    mail.outbox.clear()
    signup_form(client, sign_in(client, trakt, username="Mallory"), email=VICTIM, username="bob")
    (confirmation,) = mail.outbox
    assert confirmation.to == [VICTIM]
    assert 'Trakt account "Mallory"' in confirmation.body
    assert "If that Trakt account is not yours, do not confirm" in confirmation.body
    assert signed_in_user_id(client) is None  # mandatory: no way in before the confirmation


def test_a_password_reset_of_an_account_without_trakt_changes_nothing(trakt):
    user = User.objects.create_user("plain", "plain@example.com", "old-Passw0rd!")
    reset_password(Client(), "plain@example.com")
    user.refresh_from_db()
    assert user.check_password("a-new-Passw0rd!")
