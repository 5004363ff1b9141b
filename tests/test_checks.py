"""Each system check fires when it should and stays quiet otherwise."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_trakt import checks

GOOD_KEY = "SmUfeQ2TCpyiwLIkUdEVdg0mC_L5KrdCR_kg3ipfm2E="


def ids(messages):
    return [message.id for message in messages]


def test_token_keys_check_quiet_with_dedicated_keys():
    with override_settings(TRAKT_TOKEN_KEYS=[GOOD_KEY]):
        assert checks.check_token_keys() == []


def test_token_keys_check_warns_when_keys_derive_from_secret_key():
    with override_settings(TRAKT_TOKEN_KEYS=None):
        messages = checks.check_token_keys()
    assert ids(messages) == ["django_trakt.W001"]
    assert "Fernet.generate_key()" in messages[0].hint


@pytest.mark.parametrize("keys", [["nope"], [GOOD_KEY, "short"], [], [123]])
def test_token_keys_check_errors_on_malformed_keys(keys):
    with override_settings(TRAKT_TOKEN_KEYS=keys):
        messages = checks.check_token_keys()
    assert ids(messages) and set(ids(messages)) == {"django_trakt.E001"}
    assert all("short" not in message.msg and "nope" not in message.msg for message in messages)


def test_malformed_key_fails_manage_py_check():
    with override_settings(TRAKT_TOKEN_KEYS=["nope"]), pytest.raises(SystemCheckError, match=r"django_trakt\.E001"):
        call_command("check")


def test_store_tokens_check_warns_about_plain_copy():
    with override_settings(SOCIALACCOUNT_STORE_TOKENS=True):
        assert ids(checks.check_allauth_token_copy()) == ["django_trakt.W002"]
    with override_settings(SOCIALACCOUNT_STORE_TOKENS=False):
        assert checks.check_allauth_token_copy() == []


def test_email_check_warns_when_signup_asks_no_email():
    with override_settings(ACCOUNT_SIGNUP_FIELDS=["username*", "password1*"]):
        assert ids(checks.check_email_on_signup()) == ["django_trakt.W003"]
    with override_settings(ACCOUNT_SIGNUP_FIELDS=["email", "username*", "password1*"]):
        assert ids(checks.check_email_on_signup()) == ["django_trakt.W003"]


def test_email_check_quiet_when_email_required():
    with override_settings(ACCOUNT_SIGNUP_FIELDS=["email*", "username*", "password1*"]):
        assert checks.check_email_on_signup() == []
    with override_settings(ACCOUNT_SIGNUP_FIELDS=["username*", "password1*"], SOCIALACCOUNT_EMAIL_REQUIRED=True):
        assert checks.check_email_on_signup() == []


def test_recommended_test_settings_pass_manage_py_check():
    call_command("check", fail_level="WARNING")
