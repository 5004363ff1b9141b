"""Account pre-hijacking: someone signs up with another person's address and links their own
Trakt accounts; the owner of the address then confirms it or claims the account
(django_trakt.internal.links.trust). Each attack of issue 21 goes through allauth's pages (or its
headless API), with its code flows on and off, and checks rows, Trakt's revocations, and
the attacker's session."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from django_trakt.models import TraktToken, UnprovenAccount
from tests.flow_urls import urlconf_for_current_settings
from tests.test_signin import sign_in, signup_form

pytestmark = pytest.mark.django_db

User = get_user_model()
VICTIM = "bob@example.com"
ATTACKER_ADDRESS = "mallory@evil.example"
NEW_PASSWORD = "a-new-Passw0rd!"


@pytest.fixture
def flows(request):
    """``(verification, code flows)``: the settings in force, with allauth's URLs built for them."""
    verification, codes = request.param
    with (
        override_settings(
            ACCOUNT_EMAIL_VERIFICATION=verification,
            ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED=codes,
            ACCOUNT_LOGIN_BY_CODE_ENABLED=codes,
            ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED=codes,
        ),
        override_settings(ROOT_URLCONF=urlconf_for_current_settings()),
    ):
        yield verification, codes


BOTH = [("optional", False), ("optional", True), ("mandatory", False), ("mandatory", True)]
WITH_CODES = [("optional", True), ("mandatory", True)]


def mailed_code(message) -> str:
    (code,) = re.findall(r"\n\n(\S+)\n\n", message.body)[:1]
    return code


def only_mail_to(address: str):
    messages = [message for message in mail.outbox if message.to == [address]]
    assert len(messages) == 1, [message.subject for message in mail.outbox]
    return messages[0]


def signed_in_user_id(client: Client):
    return client.session.get("_auth_user_id")


def attacker_signs_up(trakt, trakt_user: str = "Mallory") -> tuple[Client, object]:
    trakt.add_user(trakt_user)
    attacker = Client()
    mail.outbox.clear()
    signup_form(attacker, sign_in(attacker, trakt, username=trakt_user), email=VICTIM, username="bob")
    return attacker, User.objects.get(username="bob")


def reset_by_link(client: Client, email: str) -> None:
    mail.outbox.clear()
    assert client.post(reverse("account_reset_password"), {"email": email}).status_code == 302
    (link,) = re.findall(r"http://testserver(/accounts/password/reset/key/\S+)", only_mail_to(email).body)
    form = client.get(link, follow=True)
    done = client.post(form.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302, done.content[:500]


def reset_by_code(client: Client, email: str) -> None:
    mail.outbox.clear()
    response = client.post(reverse("account_reset_password"), {"email": email})
    assert response["Location"] == reverse("account_confirm_password_reset_code")
    confirmed = client.post(response["Location"], {"code": mailed_code(only_mail_to(email))})
    assert confirmed["Location"] == reverse("account_complete_password_reset"), confirmed.content[:500]
    done = client.post(confirmed["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302, done.content[:500]


def login_by_code(client: Client, email: str) -> None:
    mail.outbox.clear()
    response = client.post(reverse("account_request_login_code"), {"email": email})
    assert response["Location"] == reverse("account_confirm_login_code"), response.content[:500]
    done = client.post(response["Location"], {"code": mailed_code(only_mail_to(email))})
    assert done.status_code == 302, done.content[:500]


def connect_by_redirect(client: Client, trakt, trakt_user: str) -> None:
    trakt.add_user(trakt_user)
    response = sign_in(client, trakt, username=trakt_user, process="connect")
    assert response.status_code == 302
    assert SocialAccount.objects.filter(uid=trakt.get_user(trakt_user).uuid).exists()


def connect_by_code(client: Client, trakt, trakt_user: str) -> None:
    trakt.add_user(trakt_user)
    trakt.device_interval = 0
    assert client.post("/trakt/device/").status_code == 302
    page = client.get("/trakt/device/pending/").content.decode()
    (user_code,) = re.findall(r'id="trakt-device-user-code">([^<]+)</code>', page)
    trakt.approve_device(user_code, trakt_user)
    answer = client.post("/trakt/device/poll/", headers={"accept": "application/json"}).json()
    assert answer["status"] == "linked", answer


CLAIMS = {"reset by link": reset_by_link, "reset by code": reset_by_code, "login by code": login_by_code}


#: The owner's claims with "optional" verification: by link with the code flows off, by code with them on.
OPTIONAL_CLAIMS = [
    (("optional", False), "reset by link"),
    (("optional", True), "reset by code"),
    (("optional", True), "login by code"),
]


def live_tokens_of(user) -> list[str]:
    return [token.access_token for token in TraktToken.objects.filter(account__user=user)]


def assert_the_attacker_has_lost_the_account(trakt, attacker: Client, user, tokens: list[str]) -> None:
    # Every link is gone here and revoked at Trakt.
    assert not SocialAccount.objects.filter(user=user).exists()
    assert not TraktToken.objects.filter(account__user=user).exists()
    revoked = {request.json.get("token") for request in trakt.requests_to("/oauth/revoke")}
    for token in tokens:
        assert token in revoked
        assert not trakt.is_access_token_valid(token)
    # The attacker's session no longer is signed in.
    assert attacker.get(reverse("account_email")).status_code == 302
    assert signed_in_user_id(attacker) is None
    # Signing in with Trakt again starts a signup of its own.
    for username in ("Mallory", "Mallory2"):
        try:
            trakt.get_user(username)
        except KeyError:
            continue
        response = sign_in(attacker, trakt, username=username)
        assert signed_in_user_id(attacker) != str(user.pk)
        assert response["Location"] == reverse("socialaccount_signup")


# -- attack 1: a second Trakt account connected while the address is unproven --------------


@pytest.mark.parametrize(("flows", "kind"), OPTIONAL_CLAIMS, indirect=["flows"])
@pytest.mark.parametrize("connect", [connect_by_redirect, connect_by_code], ids=["redirect", "device"])
def test_a_trakt_account_connected_while_unproven_is_removed_by_the_owners_claim(trakt, flows, kind, connect):
    claim = CLAIMS[kind]
    attacker, user = attacker_signs_up(trakt)
    connect(attacker, trakt, "Mallory2")
    tokens = live_tokens_of(user)
    assert len(tokens) == 2

    victim = Client()
    claim(victim, VICTIM)

    assert_the_attacker_has_lost_the_account(trakt, attacker, user, tokens)
    assert signed_in_user_id(victim) == str(user.pk) or victim.login(username="bob", password=NEW_PASSWORD)


# -- attack 2: the attacker confirms an address of their own -------------------------------


@pytest.mark.parametrize(("flows", "kind"), OPTIONAL_CLAIMS, indirect=["flows"])
def test_confirming_another_address_proves_nothing_and_the_owners_claim_removes_it(trakt, flows, kind):
    claim = CLAIMS[kind]
    attacker, user = attacker_signs_up(trakt)
    mail.outbox.clear()
    cache.clear()  # allauth's confirmation cooldown
    added = attacker.post(reverse("account_email"), {"action_add": "", "email": ATTACKER_ADDRESS})
    assert added.status_code == 302
    message = only_mail_to(ATTACKER_ADDRESS)
    if flows[1]:
        confirmed = attacker.post(reverse("account_email_verification_sent"), {"code": mailed_code(message)})
    else:
        (link,) = re.findall(r"http://testserver(/accounts/confirm-email/\S+)", message.body)
        confirmed = attacker.post(link)
    assert confirmed.status_code == 302
    assert EmailAddress.objects.get(email=ATTACKER_ADDRESS).verified
    tokens = live_tokens_of(user)

    claim(Client(), VICTIM)

    assert_the_attacker_has_lost_the_account(trakt, attacker, user, tokens)
    # The attacker's own address went with the claim: no way back in through it.
    assert not EmailAddress.objects.filter(email=ATTACKER_ADDRESS).exists()


# -- attacks 3 and 4: allauth's code flows verify the address on the way ------------------


@pytest.mark.parametrize("flows", WITH_CODES, indirect=True)
@pytest.mark.parametrize("kind", ["reset by code", "login by code"])
def test_a_code_flow_of_the_owner_is_a_claim_not_a_confirmation(trakt, flows, kind):
    attacker, user = attacker_signs_up(trakt)
    tokens = live_tokens_of(user)

    victim = Client()
    CLAIMS[kind](victim, VICTIM)

    assert_the_attacker_has_lost_the_account(trakt, attacker, user, tokens)
    assert EmailAddress.objects.get(email=VICTIM).verified
    assert not UnprovenAccount.objects.filter(user=user).exists()  # the owner has it now
    if kind == "login by code":
        assert signed_in_user_id(victim) == str(user.pk)
        assert not User.objects.get(pk=user.pk).has_usable_password()  # the attacker's, if any


@pytest.mark.parametrize("flows", [("optional", True)], indirect=True)
def test_a_password_the_attacker_chose_dies_with_the_owners_code_login(trakt, flows):
    # "optional": signed in through Trakt, the attacker gives the account a password.
    attacker, _user = attacker_signs_up(trakt)
    chosen = {"password1": "mallorys-Passw0rd", "password2": "mallorys-Passw0rd"}
    assert attacker.post(reverse("account_set_password"), chosen).status_code == 302
    assert Client().login(username="bob", password="mallorys-Passw0rd")
    login_by_code(Client(), VICTIM)
    assert not Client().login(username="bob", password="mallorys-Passw0rd")


# -- the owner's own confirmation trusts the links -----------------------------------------


@pytest.mark.parametrize("flows", BOTH, indirect=True)
def test_confirming_the_signup_address_through_its_mail_trusts_every_link(trakt, flows):
    verification, codes = flows
    client = Client()
    mail.outbox.clear()
    signup_form(client, sign_in(client, trakt), email="wanda@example.com")
    message = only_mail_to("wanda@example.com")
    if codes:
        confirmed = client.post(reverse("account_email_verification_sent"), {"code": mailed_code(message)})
    else:
        (link,) = re.findall(r"http://testserver(/accounts/confirm-email/\S+)", message.body)
        confirmed = client.post(link)
    assert confirmed.status_code == 302
    wanda = User.objects.get(email="wanda@example.com")
    assert not UnprovenAccount.objects.filter(user=wanda).exists()
    if verification == "optional" or signed_in_user_id(client):
        connect_by_redirect(client, trakt, "Wanda2")
    token_ids = set(TraktToken.objects.filter(account__user=wanda).values_list("pk", flat=True))

    (reset_by_code if codes else reset_by_link)(Client(), "wanda@example.com")

    assert set(TraktToken.objects.filter(account__user=wanda, status="active").values_list("pk", flat=True)) == (
        token_ids
    )


def test_a_password_reset_of_an_account_without_trakt_changes_nothing(trakt):
    user = User.objects.create_user("plain", "plain@example.com", "old-Passw0rd!")
    reset_by_link(Client(), "plain@example.com")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_the_owner_of_the_address_claims_it_and_the_attackers_trakt_no_longer_reaches_it(trakt):
    attacker, account = attacker_signs_up(trakt)
    # The account is unproven (issue 21: a fact of the account, no longer a flag of its link).
    assert UnprovenAccount.objects.get(user=account).email == VICTIM
    tokens = live_tokens_of(account)
    assert signed_in_user_id(attacker) == str(account.pk)  # Mallory is in, for now

    victim = Client()
    reset_by_link(victim, VICTIM)
    assert_the_attacker_has_lost_the_account(trakt, attacker, account, tokens)
    assert victim.login(username="bob", password=NEW_PASSWORD)


def test_staff_marking_the_address_verified_trusts_the_links(trakt, admin_client):
    _attacker, user = attacker_signs_up(trakt)
    address = EmailAddress.objects.get(email=VICTIM)
    response = admin_client.post(
        reverse("admin:account_emailaddress_changelist"),
        {"action": "make_verified", "_selected_action": [address.pk]},
    )
    assert response.status_code == 302
    assert not UnprovenAccount.objects.filter(user=user).exists()
    assert SocialAccount.objects.filter(user=user).exists()


# -- attack 5: every confirmation mail names the Trakt account -----------------------------

WARNING = "do not confirm"


@pytest.mark.parametrize("flows", [("mandatory", False), ("mandatory", True)], indirect=True)
def test_every_confirmation_mail_names_the_trakt_account_and_warns(trakt, flows):
    attacker, _user = attacker_signs_up(trakt)
    signup_mail = only_mail_to(VICTIM)
    assert 'Trakt account "Mallory"' in signup_mail.body and WARNING in signup_mail.body
    assert signed_in_user_id(attacker) is None  # mandatory: no way in before the confirmation

    # allauth's cooldown passes; the attacker signs in with Trakt again: allauth mails again.
    cache.clear()
    mail.outbox.clear()
    sign_in(attacker, trakt, username="Mallory")
    resent = only_mail_to(VICTIM)
    assert 'Trakt account "Mallory"' in resent.body
    assert WARNING in resent.body
    assert "Confirm only if you just signed up with that Trakt account yourself" in resent.body


@pytest.mark.parametrize("flows", [("optional", False), ("optional", True)], indirect=True)
def test_the_resent_confirmation_from_the_email_page_names_the_trakt_account(trakt, flows):
    attacker, _user = attacker_signs_up(trakt)
    cache.clear()
    mail.outbox.clear()
    response = attacker.post(reverse("account_email"), {"action_send": "", "email": VICTIM})
    assert response.status_code == 302
    resent = only_mail_to(VICTIM)
    assert 'Trakt account "Mallory"' in resent.body and WARNING in resent.body


def test_e006_without_the_adapter():
    from django.core import checks as django_checks  # noqa: F401

    from django_trakt import checks

    assert checks.check_account_adapter() == []
    with override_settings(ACCOUNT_ADAPTER="allauth.account.adapter.DefaultAccountAdapter"):
        assert [message.id for message in checks.check_account_adapter()] == ["django_trakt.E006"]
    assert settings.ACCOUNT_ADAPTER.endswith("TraktAccountAdapter")


# -- the same through allauth's headless API (browser client) -------------------------------

API = "/_allauth/browser/v1"
FRONTEND = "https://app.example.com"


@pytest.fixture
def headless(request):
    verification = request.param
    with (
        override_settings(
            INSTALLED_APPS=[*settings.INSTALLED_APPS, "allauth.headless"],
            HEADLESS_ONLY=True,
            HEADLESS_FRONTEND_URLS={
                "account_confirm_email": f"{FRONTEND}/account/verify-email/{{key}}",
                "account_reset_password_from_key": f"{FRONTEND}/account/password/reset/key/{{key}}",
                "account_signup": f"{FRONTEND}/account/signup",
                "socialaccount_login_error": f"{FRONTEND}/account/provider/callback",
            },
            CSRF_TRUSTED_ORIGINS=[FRONTEND],
            ACCOUNT_EMAIL_VERIFICATION=verification,
            ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED=True,
            ACCOUNT_LOGIN_BY_CODE_ENABLED=True,
        ),
        override_settings(ROOT_URLCONF=urlconf_for_current_settings(headless=True)),
    ):
        yield verification


def headless_signup(client: Client, trakt, username: str, email: str):
    start = client.post(
        f"{API}/auth/provider/redirect",
        {"provider": "trakt", "callback_url": f"{FRONTEND}/callback", "process": "login"},
    )
    assert start.status_code == 302, start.content
    client.get(trakt.authorize(start["Location"], username=username))
    return client.post(
        f"{API}/auth/provider/signup", {"email": email, "username": "bob"}, content_type="application/json"
    )


def headless_user_id(client: Client):
    answer = client.get(f"{API}/auth/session")
    return answer.json()["data"]["user"]["id"] if answer.status_code == 200 else None


def headless_reset_by_code(client: Client, email: str, *, confirm_first: bool) -> None:
    mail.outbox.clear()
    client.post(f"{API}/auth/password/request", {"email": email}, content_type="application/json")
    code = mailed_code(only_mail_to(email))
    if confirm_first:  # the SPA checks the code first (GET), then posts the password
        assert client.get(f"{API}/auth/password/reset", headers={"X-Password-Reset-Key": code}).status_code == 200
    done = client.post(
        f"{API}/auth/password/reset", {"key": code, "password": NEW_PASSWORD}, content_type="application/json"
    )
    assert done.status_code in (200, 401), done.content


def headless_login_by_code(client: Client, email: str) -> None:
    mail.outbox.clear()
    client.post(f"{API}/auth/code/request", {"email": email}, content_type="application/json")
    done = client.post(
        f"{API}/auth/code/confirm", {"code": mailed_code(only_mail_to(email))}, content_type="application/json"
    )
    assert done.status_code == 200, done.content


@pytest.mark.parametrize("headless", ["optional", "mandatory"], indirect=True)
@pytest.mark.parametrize("claim", ["reset, code checked first", "reset, code with the password", "login by code"])
def test_headless_code_flows_of_the_owner_are_claims(trakt, headless, claim):
    trakt.add_user("Mallory")
    attacker = Client()
    headless_signup(attacker, trakt, "Mallory", VICTIM)
    user = User.objects.get(username="bob")
    tokens = live_tokens_of(user)
    assert headless_user_id(attacker) == (user.pk if headless == "optional" else None)

    victim = Client()
    if claim == "login by code":
        headless_login_by_code(victim, VICTIM)
        assert headless_user_id(victim) == user.pk
    else:
        headless_reset_by_code(victim, VICTIM, confirm_first=claim.endswith("first"))
        # The password the owner just set is theirs: the claim left it alone.
        assert Client().login(username="bob", password=NEW_PASSWORD)

    assert not SocialAccount.objects.filter(user=user).exists()
    revoked = {request.json.get("token") for request in trakt.requests_to("/oauth/revoke")}
    assert set(tokens) <= revoked
    assert headless_user_id(attacker) is None
    # The attacker's Trakt sign-in no longer reaches the account.
    start = attacker.post(
        f"{API}/auth/provider/redirect",
        {"provider": "trakt", "callback_url": f"{FRONTEND}/callback", "process": "login"},
    )
    attacker.get(trakt.authorize(start["Location"], username="Mallory"))
    assert headless_user_id(attacker) is None
