"""The admin for linked Trakt accounts: what it lists, filters and finds, its two actions,
and that no page of it (or of allauth's social account admin) ever holds a token."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from django_trakt import signals
from django_trakt.admin.display import expiry_marker
from django_trakt.admin.social_account_admin import TraktSocialAccountAdmin
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

User = get_user_model()

CHANGELIST = reverse("admin:django_trakt_trakttoken_changelist")
HOUR = dt.timedelta(hours=1)


def change_url(token):
    return reverse("admin:django_trakt_trakttoken_change", args=[token.pk])


def secrets_of(*tokens):
    """Plain tokens and ciphertexts: none may appear on any admin page."""
    values = []
    for token in tokens:
        token = TraktToken.objects.get(pk=token.pk)
        values += [token.access_token, token.refresh_token, token.access_token_encrypted, token.refresh_token_encrypted]
    assert all(values)
    return values


def assert_no_secret(html, secrets):
    for secret in secrets:
        assert secret not in html
    assert "gAAAAA" not in html  # no Fernet ciphertext at all


@pytest.fixture
def links(linked):
    """Links in every expiry state, keyed by state; site usernames differ from Trakt's."""
    states = {
        "expired": -HOUR,
        "soon": 2 * HOUR,
        "week": dt.timedelta(days=3),
        "later": dt.timedelta(days=30),
        "unknown": None,
    }
    made = {}
    for index, (state, expires_in) in enumerate(states.items()):
        user, token = linked(f"Trakt{state.capitalize()}", expires_in=expires_in)
        if expires_in is None:
            TraktToken.objects.filter(pk=token.pk).update(expires_at=None)
        User.objects.filter(pk=user.pk).update(
            username=f"site{index}", email=f"person{index}@example.org", first_name=f"First{state}", last_name="Last"
        )
        made[state] = TraktToken.objects.select_related("account__user").get(pk=token.pk)
    return made


def rows(response):
    """Changelist rows as {trakt username: row html}."""
    assert response.status_code == 200
    html = response.content.decode()
    body = html.split('<table id="result_list">', 1)[1].split("</table>", 1)[0]
    found = {}
    for row in re.findall(r"<tr>.*?</tr>", body.split("<tbody>", 1)[1], flags=re.S):
        name = re.search(r"Trakt\w+", row)
        assert name, row
        found[name.group(0)] = row
    return found


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def act(client, action, tokens, **extra):
    data = {"action": action, "_selected_action": [token.pk for token in tokens], **extra}
    return client.post(CHANGELIST, data, follow=True)


# -- the changelist ---------------------------------------------------------------------------------


def test_changelist_shows_user_trakt_username_status_and_expiry_at_a_glance(admin_client, links):
    TraktToken.objects.filter(pk=links["later"].pk).update(
        status=TraktToken.Status.NEEDS_REAUTH, last_error="Trakt rejected the grant: invalid_grant"
    )
    refreshed_at = timezone.now() - HOUR
    TraktToken.objects.filter(pk=links["week"].pk).update(last_refreshed_at=refreshed_at)
    found = rows(admin_client.get(CHANGELIST))
    assert set(found) == {"TraktExpired", "TraktSoon", "TraktWeek", "TraktLater", "TraktUnknown"}
    assert "site0" in found["TraktExpired"]
    assert "<strong>expired</strong>" in found["TraktExpired"]
    assert "<strong>expiring soon</strong>" in found["TraktSoon"]
    for state in ("TraktWeek", "TraktLater", "TraktUnknown"):
        assert "expired" not in found[state] and "expiring soon" not in found[state]
    assert "unknown" in found["TraktUnknown"]
    assert "Needs re-authorization" in found["TraktLater"] and "invalid_grant" in found["TraktLater"]
    assert "Active" in found["TraktWeek"]
    # Expiry and last refresh in one format, the active locale's SHORT_DATETIME_FORMAT.
    from django.utils import formats

    def shown(value):
        return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")

    assert shown(refreshed_at) in found["TraktWeek"]
    assert shown(TraktToken.objects.get(pk=links["week"].pk).expires_at) in found["TraktWeek"]
    # Soonest expiry first, unknown last.
    assert list(found) == ["TraktExpired", "TraktSoon", "TraktWeek", "TraktLater", "TraktUnknown"]


def test_changelist_queries_do_not_grow_with_the_number_of_links(
    admin_client, links, linked, django_assert_max_num_queries
):
    admin_client.get(CHANGELIST)  # warm up (session, content types)
    with django_assert_max_num_queries(12) as few:
        admin_client.get(CHANGELIST)
    for _ in range(5):
        linked()
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(CHANGELIST)


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ("expired", {"TraktExpired"}),
        ("24h", {"TraktSoon"}),
        ("7d", {"TraktSoon", "TraktWeek"}),
        ("later", {"TraktLater"}),
        ("unknown", {"TraktUnknown"}),
    ],
)
def test_expiry_filter(admin_client, links, expiry, expected):
    assert set(rows(admin_client.get(CHANGELIST, {"expiry": expiry}))) == expected


def test_status_filter(admin_client, links):
    TraktToken.objects.filter(pk=links["soon"].pk).update(status=TraktToken.Status.UNREADABLE)
    response = admin_client.get(CHANGELIST, {"status__exact": "unreadable"})
    assert set(rows(response)) == {"TraktSoon"}
    html = response.content.decode()
    for label in ("Expired", "Expiring within 24 hours", "Expiring within 7 days", "Expiring later", "Unknown"):
        assert label in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("traktwee", {"TraktWeek"}),  # Trakt username, any case (JSON key on PostgreSQL and SQLite)
        ("site3", {"TraktLater"}),  # the user's username
        ("person4@example.org", {"TraktUnknown"}),  # the user's email
        ("firstsoon", {"TraktSoon"}),  # the user's first name
        ("Last", {"TraktExpired", "TraktSoon", "TraktWeek", "TraktLater", "TraktUnknown"}),
    ],
)
def test_search_by_trakt_username_and_user(admin_client, links, query, expected):
    assert set(rows(admin_client.get(CHANGELIST, {"q": query}))) == expected


def test_search_never_matches_a_token(admin_client, links):
    token = links["week"]
    for value in (token.access_token, token.refresh_token, token.access_token_encrypted[:20], "gAAAA"):
        response = admin_client.get(CHANGELIST, {"q": value})
        assert response.status_code == 200 and response.context["cl"].result_count == 0


# -- the change page: read-only, no add, no plain delete --------------------------------------------


def test_change_page_is_read_only_without_token_or_delete(admin_client, links):
    token = links["expired"]
    response = admin_client.get(change_url(token))
    assert response.status_code == 200
    html = response.content.decode()
    assert "TraktExpired" in html and "site0" in html and "<strong>expired</strong>" in html
    assert 'name="status"' not in html and 'name="_save"' not in html
    assert reverse("admin:django_trakt_trakttoken_delete", args=[token.pk]) not in html
    # The social account is one click away.
    assert reverse("admin:socialaccount_socialaccount_change", args=[token.account_id]) in html


@pytest.mark.parametrize(
    ("state", "status", "advice"),
    [
        ("later", "active", "Nothing: the link works."),
        ("expired", "active", "check that refresh_trakt_tokens runs (hourly)"),
        ("later", "needs_reauth", "the user must sign in with Trakt again"),
        ("later", "revoked", "The link was revoked"),
        ("later", "unreadable", "Put the key that encrypted it back"),
        ("later", "corrupted", "no key can bring it back"),
    ],
)
def test_change_page_says_what_to_do_in_every_state(admin_client, links, state, status, advice):
    token = links[state]
    TraktToken.objects.filter(pk=token.pk).update(status=status)
    html = admin_client.get(change_url(token)).content.decode()
    cell = re.search(r'<div class="readonly">(.*?)</div>', html.split("What to do", 1)[1], flags=re.S)
    assert cell and advice in cell.group(1), html.split("What to do", 1)[1][:400]


def test_no_add_form_and_no_plain_delete(admin_client, links):
    token = links["week"]
    assert admin_client.get(reverse("admin:django_trakt_trakttoken_add")).status_code == 403
    delete_url = reverse("admin:django_trakt_trakttoken_delete", args=[token.pk])
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert TraktToken.objects.filter(pk=token.pk).exists()
    choices = [value for value, _label in rows_actions(admin_client)]
    assert choices == ["", "refresh_now", "revoke_and_unlink"]


def rows_actions(client):
    """The actions offered on the changelist, as (name, label); none at all: ``[]``."""
    form = client.get(CHANGELIST).context["action_form"]
    return form.fields["action"].choices if form is not None else []


def test_every_admin_page_holds_no_token(admin_client, links, trakt):
    token = links["soon"]
    account = token.account
    secrets = secrets_of(*links.values())
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["django_trakt"]),
        CHANGELIST,
        f"{CHANGELIST}?expiry=expired",
        f"{CHANGELIST}?status__exact=active",
        f"{CHANGELIST}?q=trakt",
        change_url(token),
        reverse("admin:django_trakt_trakttoken_history", args=[token.pk]),
        reverse("admin:socialaccount_socialaccount_changelist"),
        reverse("admin:socialaccount_socialaccount_change", args=[account.pk]),
        reverse("admin:socialaccount_socialaccount_delete", args=[account.pk]),
        reverse("admin:auth_user_change", args=[account.user_id]),
        reverse("admin:auth_user_delete", args=[account.user_id]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), secrets)
    confirmation = act(admin_client, "revoke_and_unlink", links.values())
    assert_no_secret(confirmation.content.decode(), secrets)
    refreshed = act(admin_client, "refresh_now", [token])
    assert_no_secret(refreshed.content.decode(), secrets + secrets_of(token))
    failed = act(admin_client, "revoke_and_unlink", [links["week"]], post="yes")
    assert_no_secret(failed.content.decode(), secrets)


# -- "Revoke and unlink" -------------------------------------------------------------------------------


def test_revoke_and_unlink_asks_first_then_revokes_each_link_once(
    admin_client, links, trakt, django_capture_on_commit_callbacks
):
    chosen = [links["expired"], links["later"]]
    access = {token.access_token for token in chosen}
    confirmation = act(admin_client, "revoke_and_unlink", chosen)
    assert confirmation.status_code == 200
    html = confirmation.content.decode()
    assert "site0" in html and "TraktExpired" in html and "TraktLater" in html and "TraktSoon" not in html
    assert trakt.requests_to("/oauth/revoke") == [] and TraktToken.objects.count() == 5

    with django_capture_on_commit_callbacks(execute=True):
        done = act(admin_client, "revoke_and_unlink", chosen, post="yes")
    assert messages_of(done) == ["2 Trakt links were unlinked and revoked at Trakt."]
    assert {request.json["token"] for request in trakt.requests_to("/oauth/revoke")} == access
    assert len(trakt.requests_to("/oauth/revoke")) == 2  # the delete receiver did not revoke again
    assert not any(trakt.is_access_token_valid(value) for value in access)
    assert not SocialAccount.objects.filter(pk__in=[token.account_id for token in chosen]).exists()
    assert TraktToken.objects.count() == 3
    assert User.objects.filter(pk=chosen[0].account.user_id).exists()


def test_revoke_and_unlink_reports_unconfirmed_revoke_and_still_unlinks(
    admin_client, links, trakt, django_capture_on_commit_callbacks
):
    trakt.fail_next("/oauth/revoke", status=503)
    chosen = [links["expired"], links["soon"]]
    with django_capture_on_commit_callbacks(execute=True):
        done = act(admin_client, "revoke_and_unlink", chosen, post="yes")
    assert messages_of(done) == [
        "1 Trakt link was unlinked and revoked at Trakt.",
        "1 Trakt link was unlinked, but Trakt did not confirm the revocation (see the logs). (TraktExpired)",
    ]
    assert len(trakt.requests_to("/oauth/revoke")) == 2
    assert not TraktToken.objects.filter(pk__in=[token.pk for token in chosen]).exists()


def test_admin_actions_leave_log_entries(admin_client, links, trakt, django_capture_on_commit_callbacks):
    from django.contrib.admin.models import CHANGE, DELETION, LogEntry

    act(admin_client, "refresh_now", [links["soon"]])
    (refreshed,) = LogEntry.objects.filter(action_flag=CHANGE)
    assert refreshed.object_id == str(links["soon"].pk) and "refreshed" in refreshed.get_change_message()
    with django_capture_on_commit_callbacks(execute=True):
        act(admin_client, "revoke_and_unlink", [links["week"]], post="yes")
    (unlinked,) = LogEntry.objects.filter(action_flag=DELETION)
    assert unlinked.object_id == str(links["week"].pk) and "revoked at Trakt" in unlinked.get_change_message()
    assert unlinked.user.is_superuser


# -- "Refresh now" ---------------------------------------------------------------------------------------


def test_refresh_now_refreshes_even_when_not_due(admin_client, links, trakt):
    chosen = [links["later"], links["unknown"]]
    before = {token.pk: token.access_token for token in chosen}
    done = act(admin_client, "refresh_now", chosen)
    assert messages_of(done) == ["2 Trakt links were refreshed."]
    for token in chosen:
        token.refresh_from_db()
        assert token.access_token != before[token.pk] and trakt.is_access_token_valid(token.access_token)
        assert token.last_refreshed_at is not None
    assert len(trakt.requests_to("/oauth/token")) == 2


def test_refresh_now_reports_links_that_need_the_user_again(admin_client, links, trakt):
    trakt.revoke_tokens("TraktWeek")  # e.g. the user connected another app
    done = act(admin_client, "refresh_now", [links["week"], links["soon"]])
    (refreshed, needs_user) = messages_of(done)
    assert refreshed == "1 Trakt link was refreshed."
    assert needs_user.startswith("1 Trakt link needs its user to sign in with Trakt again. (TraktWeek: ")
    links["week"].refresh_from_db()
    assert links["week"].status == TraktToken.Status.NEEDS_REAUTH


def test_refresh_now_reports_failures_and_keeps_tokens(admin_client, links, trakt):
    token = links["soon"]
    before = (token.access_token, token.refresh_token)
    trakt.fail_next("/oauth/token", status=503)
    done = act(admin_client, "refresh_now", [token])
    (message,) = messages_of(done)
    assert message.startswith("1 Trakt link could not be refreshed; try again later. (TraktSoon: ")
    assert "503" in message
    token.refresh_from_db()
    assert (token.access_token, token.refresh_token) == before


def test_refresh_now_without_a_trakt_app_says_so(admin_client, links, trakt, settings):
    providers = {"trakt": {k: v for k, v in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if k != "APP"}}
    settings.SOCIALACCOUNT_PROVIDERS = providers
    done = act(admin_client, "refresh_now", [links["soon"]])
    assert done.status_code == 200
    (message,) = messages_of(done)
    assert "No Trakt app is configured" in message
    assert trakt.requests_to("/oauth/token") == []


def test_refresh_now_with_a_rotated_secret_names_the_fix_and_flags_nobody(admin_client, links, trakt, settings):
    provider = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**provider, "APP": {**provider["APP"], "secret": "rotated"}}}
    chosen = [links["soon"], links["week"]]
    done = act(admin_client, "refresh_now", chosen)
    assert done.status_code == 200
    (message,) = messages_of(done)
    assert "client_id/secret" in message and "No link was flagged" in message
    assert len(trakt.requests_to("/oauth/token")) == 1  # stopped at the first
    for token in chosen:
        token.refresh_from_db()
        assert token.status == TraktToken.Status.ACTIVE


# -- permissions -------------------------------------------------------------------------------------------


def staff_with(client, *codenames):
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def test_view_only_staff_sees_no_action_and_cannot_post_one(client, links, trakt):
    staff_with(client, "view_trakttoken")
    assert rows_actions(client) == []
    act(client, "revoke_and_unlink", [links["week"]], post="yes")
    act(client, "refresh_now", [links["week"]])
    assert TraktToken.objects.count() == 5
    assert trakt.requests_to("/oauth/revoke") == [] and trakt.requests_to("/oauth/token") == []


def test_each_action_needs_its_own_permission(client, links):
    staff_with(client, "view_trakttoken", "delete_socialaccount")
    assert [value for value, _label in rows_actions(client)] == ["", "revoke_and_unlink"]
    client.logout()
    User.objects.filter(username="staff").delete()
    staff_with(client, "view_trakttoken", "change_trakttoken")
    assert [value for value, _label in rows_actions(client)] == ["", "refresh_now"]


# -- allauth's social account admin -------------------------------------------------------------------------


def test_social_account_admin_shows_the_link_inline(admin_client, links):
    assert isinstance(admin.site._registry[SocialAccount], TraktSocialAccountAdmin)
    token = links["expired"]
    response = admin_client.get(reverse("admin:socialaccount_socialaccount_change", args=[token.account_id]))
    html = response.content.decode()
    assert "Active" in html and "<strong>expired</strong>" in html
    assert change_url(token) in html


def test_social_account_change_form_still_saves(admin_client, links):
    token = links["week"]
    url = reverse("admin:socialaccount_socialaccount_change", args=[token.account_id])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(
        {
            "user": token.account.user_id,
            "extra_data": '{"user": {"username": "TraktWeek"}}',
            "trakt_token-TOTAL_FORMS": "1",
            "trakt_token-INITIAL_FORMS": "1",
            "trakt_token-MIN_NUM_FORMS": "0",
            "trakt_token-MAX_NUM_FORMS": "1",
            "trakt_token-0-id": token.pk,
            "trakt_token-0-account": token.account_id,
            "_save": "Save",
        }
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    token.refresh_from_db()
    assert token.access_token_encrypted and TraktToken.objects.filter(pk=token.pk).exists()


def test_deleting_a_social_account_in_the_admin_revokes_it(
    admin_client, links, trakt, django_capture_on_commit_callbacks
):
    token = links["later"]
    access = token.access_token
    url = reverse("admin:socialaccount_socialaccount_delete", args=[token.account_id])
    confirmation = admin_client.get(url).content.decode()
    assert "Trakt token" in confirmation  # the cascade is listed, not blocked
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    (revoke,) = trakt.requests_to("/oauth/revoke")
    assert revoke.json["token"] == access
    assert not TraktToken.objects.filter(pk=token.pk).exists()


# -- admin -----------------------------------------------------------------------------------------------


def test_expiry_marker_states():
    now = timezone.now()
    assert expiry_marker(None, now) == ""
    assert expiry_marker(now, now) == "expired"
    assert expiry_marker(now + dt.timedelta(hours=23), now) == "expiring soon"
    assert expiry_marker(now + dt.timedelta(days=2), now) == ""


def admin_action(client, action, tokens):
    data = {"action": action, "_selected_action": [token.pk for token in tokens]}
    response = client.post(CHANGELIST, data, follow=True)
    return [str(message) for message in response.context["messages"]]


def test_refresh_now_failure_message_lists_ten_links_then_counts_the_rest(admin_client, linked, trakt):
    tokens = [linked(f"Batch{number:02d}")[1] for number in range(12)]
    trakt.fail_next("/oauth/token", status=503, times=12)
    (message,) = admin_action(admin_client, "refresh_now", tokens)
    assert message.startswith("12 Trakt links could not be refreshed; try again later. (")
    assert message.endswith(" and 2 more)")
    assert sum(f"Batch{number:02d}: " in message for number in range(12)) == 10


def test_refresh_now_reports_a_link_unlinked_meanwhile_as_not_refreshed(admin_client, linked, trakt):
    (_u1, first), (_u2, second) = linked("RaceOne"), linked("RaceTwo")
    pair = {first.pk: second, second.pk: first}

    def unlink_the_other(sender, token, **kwargs):
        # The other user disconnects Trakt while the admin's action runs.
        SocialAccount.objects.filter(pk=pair[token.pk].account_id).delete()

    signals.token_refreshed.connect(unlink_the_other, dispatch_uid="test_admin_unlink_race")
    try:
        messages = admin_action(admin_client, "refresh_now", [first, second])
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="test_admin_unlink_race")
    refreshed, not_refreshed = messages
    assert refreshed == "1 Trakt link was refreshed."
    assert not_refreshed.startswith("1 Trakt link was not refreshed. (Race")
    assert not_refreshed.endswith(": being refreshed elsewhere, or unlinked)")
    assert TraktToken.objects.count() == 1
