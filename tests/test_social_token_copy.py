"""allauth's own token copy (``SOCIALACCOUNT_STORE_TOKENS = True``): as allauth documents it.

``SocialToken.token``/``token_secret`` in allauth's table are the plain access and refresh
tokens, which a site's code can hand to Trakt; every copy allauth keeps in the session (a
pending signup, a login waiting for its email address to be verified) stays sealed.
``TraktToken`` (encrypted) remains the copy the app reads.
"""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.test import override_settings
from django.urls import reverse

from django_trakt.models import TraktToken
from tests.test_secrets_on_errors import issued_tokens, sessions_text
from tests.test_signin import only_token, sign_in, signup_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("store_tokens")]


@pytest.fixture
def store_tokens():
    with override_settings(SOCIALACCOUNT_STORE_TOKENS=True):
        yield


def allauth_copy():
    return SocialToken.objects.select_related("account").get()


def assert_copy_is_the_link(copy, trakt):
    link = only_token()
    assert copy.account == link.account
    assert (copy.token, copy.token_secret) == (link.access_token, link.refresh_token)
    assert copy.expires_at == link.expires_at
    assert trakt.is_access_token_valid(copy.token)  # what a site reads from allauth's table works at Trakt


def test_signup_stores_plain_tokens_in_allauths_table_and_none_in_the_session(client, trakt):
    response = sign_in(client, trakt)
    secrets = issued_tokens(trakt)
    assert "socialaccount_sociallogin" in sessions_text()  # the pending signup...
    for secret in secrets:
        assert secret not in sessions_text()  # ...keeps its tokens sealed
    assert SocialToken.objects.count() == 0

    signup_form(client, response)

    assert_copy_is_the_link(allauth_copy(), trakt)
    for secret in secrets:
        assert secret not in sessions_text()


@override_settings(ACCOUNT_EMAIL_VERIFICATION="mandatory")
def test_a_login_waiting_for_email_verification_keeps_its_tokens_sealed_in_the_session(client, trakt):
    """allauth saves the token, then serializes the same login into the session until the
    address is verified: the object must be sealed again once written."""
    _page, done = signup_form(client, sign_in(client, trakt))

    assert done.status_code == 302 and done["Location"] == reverse("account_email_verification_sent")
    assert "account_login" in client.session  # the login waits in the session...
    assert "socialaccount" in sessions_text()  # ...with its SocialLogin
    for secret in issued_tokens(trakt):
        assert secret not in sessions_text()
    assert_copy_is_the_link(allauth_copy(), trakt)


def test_a_returning_user_gets_the_new_tokens_in_allauths_table(client, trakt):
    signup_form(client, sign_in(client, trakt))
    first = allauth_copy().token
    client.logout()

    response = sign_in(client, trakt)

    assert response.status_code == 302
    copy = allauth_copy()
    assert copy.token != first
    assert_copy_is_the_link(copy, trakt)
    for secret in issued_tokens(trakt):
        assert secret not in sessions_text()


def test_a_sites_own_social_token_keeps_what_the_site_set(client, trakt):
    signup_form(client, sign_in(client, trakt))
    account = SocialAccount.objects.get()
    SocialToken.objects.all().delete()

    own = SocialToken(account=account, token="site-access", token_secret="site-refresh")
    own.save()

    assert (own.token, own.token_secret) == ("site-access", "site-refresh")
    assert SocialToken.objects.values_list("token", "token_secret").get() == ("site-access", "site-refresh")
    assert TraktToken.objects.get().access_token != "site-access"
