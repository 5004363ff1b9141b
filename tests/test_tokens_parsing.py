"""Token answers and where they are stored: odd expiries, odd fields, logins that are not ours.

Trakt's token answer has changed shape before; anything odd about the expiry means
"unknown expiry" (never an error, never a guess), while an unusable token field is a
typed :class:`TraktMalformedResponse`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from allauth.account.signals import user_signed_up
from allauth.socialaccount.models import SocialAccount, SocialLogin, SocialToken
from allauth.socialaccount.signals import social_account_added, social_account_updated
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError, TraktMalformedResponse
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.links import crypto
from django_trakt.internal.links.receivers import store_token_for_login
from django_trakt.models import TraktToken

DAY = 86400
CREATED = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def parse(**fields):
    return grant_from_response({"access_token": "access", "refresh_token": "refresh", **fields})


def close_to_now_plus(value: dt.datetime | None, seconds: float) -> bool:
    expected = timezone.now() + dt.timedelta(seconds=seconds)
    return value is not None and abs((value - expected).total_seconds()) < 60


# -- expiry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("expires_in", ["soon", "", "7 days", [86400], {"seconds": 1}, True, None])
def test_expiry_unusable_expires_in_is_unknown(expires_in):
    assert parse(expires_in=expires_in, created_at=CREATED).expires_at is None


def test_expiry_numeric_string_expires_in_is_used():
    expected = dt.datetime(2023, 11, 15, 22, 13, 20, tzinfo=dt.UTC)
    assert parse(expires_in="86400", created_at=CREATED).expires_at == expected


@pytest.mark.parametrize("created_at", ["yesterday", "", [CREATED], True, 1e20, -1e20, float("nan")])
def test_expiry_unusable_created_at_counts_from_now(created_at):
    assert close_to_now_plus(parse(expires_in=DAY, created_at=created_at).expires_at, DAY)


@pytest.mark.parametrize("expires_in", [1e20, -1e20, "inf", "1e300"])
def test_expiry_out_of_range_lifetime_is_unknown(expires_in):
    assert parse(expires_in=expires_in, created_at=CREATED).expires_at is None


# Beyond a float's range: ``float(10**400)`` raises OverflowError (a 500 where an app sent the
# token, issue 21); a Decimal (a JSON parser's parse_float) and its NaNs the same.
@pytest.mark.parametrize(
    "expires_in",
    [10**400, -(10**400), "9" * 400, Decimal("1e999"), Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")],
    ids=[
        "int-400-digits",
        "negative-int-400-digits",
        "string-400-digits",
        "decimal-1e999",
        "decimal-nan",
        "decimal-snan",
        "decimal-minus-infinity",
    ],
)
def test_expiry_number_beyond_a_float_is_unknown(expires_in):
    assert parse(expires_in=expires_in, created_at=CREATED).expires_at is None


@pytest.mark.parametrize("created_at", [10**400, Decimal("1e999"), Decimal("sNaN")])
def test_expiry_created_at_beyond_a_float_counts_from_now(created_at):
    assert close_to_now_plus(parse(expires_in=DAY, created_at=created_at).expires_at, DAY)


def test_expiry_decimal_lifetime_is_used():
    expected = dt.datetime(2023, 11, 15, 22, 13, 20, tzinfo=dt.UTC)
    assert parse(expires_in=Decimal("86400.0"), created_at=Decimal(CREATED)).expires_at == expected


def test_expiry_lifetime_past_year_9999_is_unknown():
    # timedelta accepts ~2.7 million years, a datetime stops at 9999: the sum overflows.
    assert parse(expires_in=8_000 * 365 * DAY, created_at=CREATED).expires_at is None


@pytest.mark.parametrize("expires_in", ["NaN", float("nan")])
def test_expiry_nan_lifetime_is_unknown(expires_in):
    assert parse(expires_in=expires_in, created_at=CREATED).expires_at is None


# -- the other fields -----------------------------------------------------------------------------


def test_scope_as_list_is_joined_with_spaces():
    assert parse(scope=["public", "private"]).scope == "public private"


def test_scope_longer_than_column_is_cut_to_255():
    assert parse(scope="x" * 300).scope == "x" * 255


@pytest.mark.parametrize("refresh_token", [42, ["r"], {"token": "r"}, True])
def test_grant_non_string_refresh_token_is_rejected(refresh_token):
    with pytest.raises(TraktMalformedResponse, match="malformed refresh_token"):
        grant_from_response({"access_token": "access", "refresh_token": refresh_token})


def test_grant_missing_token_type_defaults_to_bearer_and_refresh_to_empty():
    parsed = grant_from_response({"access_token": "access", "refresh_token": None})
    assert (parsed.token_type, parsed.refresh_token, parsed.scope) == ("bearer", "", "")


# -- which logins store a token (receivers) -------------------------------------------------------


@pytest.fixture
def site_user(db):
    return get_user_model().objects.create_user("returning", "returning@example.com", "pw")


LOGIN_ACCESS = "access-from-login"


def login_for(user, *, provider="trakt", saved=True, token=LOGIN_ACCESS):
    account = SocialAccount(user=user, provider=provider, uid=f"{provider}-uid", extra_data={})
    if saved:
        account.save()
    sociallogin = SocialLogin(user=user, account=account)
    # As allauth's OAuth2 callback does: the token is attached after the login is built.
    sociallogin.token = SocialToken(token=token, token_secret="refresh-from-login") if token is not None else None
    return sociallogin


def test_receivers_trakt_login_stores_token(site_user):
    sociallogin = login_for(site_user)
    social_account_updated.send(sender=SocialLogin, request=None, sociallogin=sociallogin)
    stored = TraktToken.objects.get(account=sociallogin.account)
    assert (stored.access_token, stored.refresh_token) == (LOGIN_ACCESS, "refresh-from-login")


@pytest.mark.parametrize("signal", [social_account_updated, social_account_added], ids=["login", "connect"])
def test_receivers_other_provider_login_is_ignored(site_user, signal):
    signal.send(sender=SocialLogin, request=None, sociallogin=login_for(site_user, provider="github"))
    assert TraktToken.objects.count() == 0


@pytest.mark.parametrize("token", [None, ""], ids=["no-token", "empty-token"])
def test_receivers_trakt_login_without_token_is_ignored(site_user, token):
    sociallogin = login_for(site_user, token=token)
    social_account_updated.send(sender=SocialLogin, request=None, sociallogin=sociallogin)
    assert TraktToken.objects.count() == 0


def test_receivers_unsaved_account_is_ignored(site_user):
    sociallogin = login_for(site_user, saved=False)
    assert store_token_for_login(sociallogin) is None
    assert TraktToken.objects.count() == 0 and SocialAccount.objects.count() == 0


def test_receivers_signup_without_social_login_is_ignored(site_user):
    # A local (username/password) signup sends user_signed_up without a sociallogin.
    user_signed_up.send(sender=get_user_model(), request=None, user=site_user)
    assert TraktToken.objects.count() == 0


# -- tokens held in memory only, and the key settings ---------------------------------------------


def test_unsaved_token_with_wrong_key_is_flagged_in_memory_only(site_user):
    account = SocialAccount.objects.create(user=site_user, provider="trakt", uid="uuid-unsaved")
    token = TraktToken(account=account)
    with override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]):
        token.access_token = "written-with-another-key"
    with pytest.raises(TokenDecryptionError) as excinfo:
        token.access_token  # noqa: B018
    assert "written-with-another-key" not in str(excinfo.value)
    assert token.status == TraktToken.Status.UNREADABLE and "decrypt" in token.last_error
    assert TraktToken.objects.count() == 0


def test_unsaved_unreadable_token_heals_in_memory_when_readable(site_user):
    account = SocialAccount.objects.create(user=site_user, provider="trakt", uid="uuid-heal")
    token = TraktToken(account=account, status=TraktToken.Status.UNREADABLE, last_error="old")
    token.access_token = "readable"
    assert token.access_token == "readable"
    assert (token.status, token.last_error) == (TraktToken.Status.ACTIVE, "")
    assert TraktToken.objects.count() == 0


def test_token_keys_single_string_setting_is_one_key():
    key = Fernet.generate_key().decode()
    with override_settings(TRAKT_TOKEN_KEYS=key):
        ciphertext = crypto.encrypt("secret-value")
    with override_settings(TRAKT_TOKEN_KEYS=[key]):
        assert crypto.decrypt(ciphertext) == "secret-value"


@pytest.mark.parametrize("keys", [[], ()])
def test_token_keys_empty_list_is_configuration_error(keys):
    with override_settings(TRAKT_TOKEN_KEYS=keys), pytest.raises(TraktConfigurationError, match="empty"):
        crypto.encrypt("x")


def test_derived_key_from_bytes_secret_matches_str_secret():
    with override_settings(TRAKT_TOKEN_KEYS=None, SECRET_KEY="shared-secret", SECRET_KEY_FALLBACKS=[]):
        ciphertext = crypto.encrypt("value")
    assert crypto.derive_key(b"shared-secret") == crypto.derive_key("shared-secret")
    with override_settings(TRAKT_TOKEN_KEYS=[crypto.derive_key(b"shared-secret")]):
        assert crypto.decrypt(ciphertext) == "value"


# -- allauth's contract: the token answer is a dict --------------------------------------------------


def test_the_adapter_reads_trakts_answer_as_a_dict_and_seals_what_allauth_keeps(rf):
    from django_trakt.internal.api.tokens import TokenAnswer
    from django_trakt.views import TraktOAuth2Adapter

    answer = TokenAnswer(
        access_token="plain-access",
        refresh_token="plain-refresh",
        expires_in=7 * DAY,
        created_at=CREATED,
        token_type="bearer",
        scope="public",
    )
    # allauth's callback view holds the answer in a local variable: reports print its repr.
    assert isinstance(answer, dict)
    for shown in (repr(answer), str(answer)):
        assert "plain-access" not in shown and "plain-refresh" not in shown

    token = TraktOAuth2Adapter(rf.get("/")).parse_token(answer)

    assert isinstance(token, SocialToken)
    assert "plain-access" not in token.token and crypto.unseal(token.token) == "plain-access"
    assert "plain-refresh" not in token.token_secret and crypto.unseal(token.token_secret) == "plain-refresh"
    # Trakt's rule (created_at + expires_in), not allauth's (now + expires_in).
    assert token.expires_at == dt.datetime.fromtimestamp(CREATED + 7 * DAY, tz=dt.UTC)
    # Only model fields: nothing rides on the instance that allauth's session would drop.
    assert not [name for name in vars(token) if name.startswith("trakt")]
