"""The HTTP layer: unreachable Trakt, odd 2xx answers, odd headers, OAuth endpoints, settings.

Whatever goes wrong, callers see a typed :mod:`django_trakt.exceptions` error, and
neither the error nor the log carries a token.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.test import override_settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from django_trakt.conf import trakt_settings
from django_trakt.exceptions import (
    TraktAPIError,
    TraktInvalidGrant,
    TraktMalformedResponse,
    TraktRateLimited,
    TraktTimeout,
    TraktTransportError,
)
from django_trakt.internal.api import oauth
from django_trakt.internal.api.http import get_user_settings, send
from django_trakt.internal.api.tokens import grant_from_response
from django_trakt.internal.links.client import TraktClient
from django_trakt.internal.links.refresh import refresh_token
from tests.conftest import CALLBACK_URL

CLIENT_ID = settings.TRAKT_CLIENT_ID
CLIENT_SECRET = settings.TRAKT_CLIENT_SECRET
FRESH = dt.timedelta(days=6)


def providers_with(**overrides):
    return {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], **overrides}}


def issued_access_token(trakt, username="Watcher"):
    return trakt.issue_tokens(username, CLIENT_ID)["access_token"]


# -- Trakt cannot be reached -----------------------------------------------------------------------


def test_send_unreachable_host_raises_transport_error_without_token(trakt, caplog):
    # The emulator answers only its own hosts: anything else is "connection refused".
    secret = "very-secret-access-token"
    with caplog.at_level(logging.DEBUG, logger="django_trakt"), pytest.raises(TraktTransportError) as excinfo:
        send("GET", "https://down.trakt.test/users/settings", client_id=CLIENT_ID, access_token=secret)
    error = excinfo.value
    assert not isinstance(error, TraktTimeout)
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert "GET /users/settings" in str(error) and secret not in str(error)
    assert "Trakt GET /users/settings failed: ConnectionError" in caplog.text
    assert secret not in caplog.text


def test_client_unreachable_api_raises_transport_error_and_logs_no_token(trakt, linked, caplog):
    user, token = linked(expires_in=FRESH)
    access, refresh = token.access_token, token.refresh_token
    client = TraktClient.for_user(user)
    with (
        override_settings(SOCIALACCOUNT_PROVIDERS=providers_with(API_URL="https://down.trakt.test")),
        caplog.at_level(logging.DEBUG, logger="django_trakt"),
        pytest.raises(TraktTransportError) as excinfo,
    ):
        client.get("/sync/watchlist")
    for text in (str(excinfo.value), caplog.text):
        assert access not in text and refresh not in text
    assert trakt.requests == []  # nothing reached the emulator


# -- 2xx answers that are not what the endpoint promises ------------------------------------------


def test_decode_json_html_page_with_200_is_malformed_response(trakt):
    # A proxy or Cloudflare answering 200 with its own page.
    trakt.cloudflare_next("/users/settings", status=200)
    with pytest.raises(TraktMalformedResponse, match="text/html where JSON was expected"):
        get_user_settings(CLIENT_ID, issued_access_token(trakt))


def test_decode_json_without_content_type_is_malformed_response(trakt):
    trakt.fail_next("/users/settings", status=200, body=b'{"user": {}}')
    with pytest.raises(TraktMalformedResponse, match="no content type"):
        get_user_settings(CLIENT_ID, issued_access_token(trakt))


@pytest.mark.parametrize(
    "document",
    [{"account": {"timezone": "UTC"}}, {"user": "Watcher"}, [{"user": {}}], None],
    ids=["no-user", "user-not-object", "list", "null"],
)
def test_user_settings_without_user_object_is_malformed_response(trakt, document):
    if document is None:
        trakt.fail_next("/users/settings", status=200, body=b"null", headers={"Content-Type": "application/json"})
    else:
        trakt.fail_next("/users/settings", status=200, json=document)
    with pytest.raises(TraktMalformedResponse, match="no user object"):
        get_user_settings(CLIENT_ID, issued_access_token(trakt))


def test_user_settings_returns_profile_document(trakt):
    document = get_user_settings(CLIENT_ID, issued_access_token(trakt))
    assert document["user"]["username"] == "Watcher"
    (request,) = trakt.requests_to("/users/settings")
    assert request.headers["trakt-api-version"] == "2" and request.headers["trakt-api-key"] == CLIENT_ID


# -- Retry-After ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon"])
def test_retry_after_not_a_number_is_raised_at_once_without_waiting(trakt, linked, monkeypatch, value):
    waits = []
    monkeypatch.setattr("django_trakt.internal.core.clock.sleep", waits.append)
    user, _token = linked(expires_in=FRESH)
    trakt.fail_next(
        "/users/settings", status=429, json={"error": "rate_limit_exceeded"}, headers={"Retry-After": value}
    )
    with pytest.raises(TraktRateLimited) as excinfo:
        TraktClient.for_user(user).get("/users/settings")
    assert excinfo.value.retry_after is None and excinfo.value.status_code == 429
    assert waits == [] and len(trakt.requests_to("/users/settings")) == 1


# -- OAuth endpoints ------------------------------------------------------------------------------


def test_exchange_code_without_pkce_sends_no_verifier_and_gets_pair(trakt):
    trakt.require_pkce = False
    callback = trakt.decide(
        {"client_id": CLIENT_ID, "redirect_uri": CALLBACK_URL, "response_type": "code", "state": "s1"}
    )
    code = parse_qs(urlsplit(callback).query)["code"][0]
    # The answer as allauth's contract has it (a dict), read the way the adapter reads it.
    answer = oauth.exchange_code(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=CALLBACK_URL)
    assert isinstance(answer, dict) and answer["access_token"] not in repr(answer)
    grant = grant_from_response(answer)
    assert trakt.is_access_token_valid(grant.access_token) and grant.refresh_token
    (request,) = trakt.requests_to("/oauth/token")
    assert request.json["grant_type"] == "authorization_code" and "code_verifier" not in request.json
    # The code is single-use.
    with pytest.raises(TraktInvalidGrant):
        oauth.exchange_code(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=CALLBACK_URL)


def test_token_endpoint_unparseable_400_is_api_error_not_rejected_grant(trakt):
    # A garbled 400 (a proxy page) must not be mistaken for "refresh token rejected".
    refresh = trakt.issue_tokens("Watcher", CLIENT_ID)["refresh_token"]
    trakt.fail_next("/oauth/token", status=400, body="<html>Bad gateway config</html>")
    with pytest.raises(TraktAPIError) as excinfo:
        oauth.refresh_grant(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=refresh, redirect_uri="")
    assert not isinstance(excinfo.value, TraktInvalidGrant) and excinfo.value.status_code == 400
    assert refresh not in str(excinfo.value)


def test_revoke_token_invalidates_access_token(trakt):
    access = issued_access_token(trakt)
    oauth.revoke_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token=access)
    assert not trakt.is_access_token_valid(access)


@pytest.mark.parametrize(
    ("status", "headers"), [(302, {"Location": "https://trakt.test/login"}), (204, {})], ids=["redirect", "204"]
)
def test_revoke_token_unconfirmed_answer_is_api_error_without_token(trakt, status, headers):
    access = issued_access_token(trakt)
    trakt.fail_next("/oauth/revoke", status=status, headers=headers)
    with pytest.raises(TraktAPIError, match="did not confirm the revocation") as excinfo:
        oauth.revoke_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token=access)
    assert excinfo.value.status_code == status and access not in str(excinfo.value)
    assert trakt.is_access_token_valid(access)  # nothing was revoked: the caller must know
    (request,) = trakt.requests_to("/oauth/revoke")
    assert request.json["token"] == access


# -- settings the transport and the pages read ----------------------------------------------------


@pytest.mark.parametrize("value", ["five minutes", [300], {"ttl": 1}])
def test_numeric_setting_unparseable_falls_back_to_default(value):
    with override_settings(TRAKT_WATCHLIST_TTL=value, TRAKT_PAGE_TIMEOUT=value):
        assert trakt_settings.WATCHLIST_TTL == 300.0
        assert trakt_settings.PAGE_TIMEOUT == 3.0


def test_numeric_setting_below_minimum_is_raised_to_it():
    with override_settings(TRAKT_PAGE_TIMEOUT="0", TRAKT_WATCHLIST_TTL=-5):
        assert trakt_settings.PAGE_TIMEOUT == 0.1
        assert trakt_settings.WATCHLIST_TTL == 0.0


def test_image_hosts_single_string_setting_is_one_host():
    with override_settings(TRAKT_IMAGE_HOSTS=" Media.Example.COM "):
        assert trakt_settings.IMAGE_HOSTS == ["media.example.com"]


# -- the site's requests session (allauth's get_requests_session) ---------------------------------

SITE_CA_BUNDLE = "/etc/ssl/site-proxy-ca.pem"
sent_through_site_adapter: list[dict] = []


class SiteTransport(HTTPAdapter):
    """What a site mounts for its proxy or CA (here: it notes what it was asked to send)."""

    def send(self, request, **kwargs):
        sent_through_site_adapter.append(
            {"url": request.url, "verify": kwargs.get("verify"), "proxies": kwargs.get("proxies")}
        )
        # On to requests' HTTPAdapter.send, where the local Trakt answers in-process.
        return super().send(request, **kwargs)


class SiteSessionAdapter(DefaultSocialAccountAdapter):
    """A site's allauth adapter: its CA bundle, a header its proxy wants, its own transport."""

    def get_requests_session(self):
        session = super().get_requests_session()
        session.verify = SITE_CA_BUNDLE
        session.headers["X-Site-Proxy"] = "corporate"
        session.headers["User-Agent"] = "site-default-agent"
        session.mount("https://", SiteTransport())
        return session


class RetryingSessionAdapter(DefaultSocialAccountAdapter):
    """A site whose session retries 5xx answers, POSTs included (urllib3's Retry)."""

    def get_requests_session(self):
        session = super().get_requests_session()
        retrying = Retry(total=3, status_forcelist=[502], allowed_methods=None, backoff_factor=0, raise_on_status=False)
        session.mount("https://", HTTPAdapter(max_retries=retrying))
        return session


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.SiteSessionAdapter")
def test_calls_to_trakt_go_through_the_sites_requests_session(trakt, linked, monkeypatch):
    # requests lets these variables override session.verify (trust_env): a bare test shell.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    sent_through_site_adapter.clear()
    _user, token = linked(expires_in=-dt.timedelta(hours=1))

    TraktClient.for_user(token.account.user).get("/users/settings")  # a refresh (auth host), then the API

    refresh_call, api_call = trakt.requests_to("/oauth/token")[-1], trakt.requests_to("/users/settings")[-1]
    for recorded in (refresh_call, api_call):
        assert recorded.headers["X-Site-Proxy"] == "corporate"  # the site's session...
        assert recorded.headers["User-Agent"] == trakt_settings.USER_AGENT  # ...with Trakt's headers on top
        assert recorded.headers["trakt-api-key"] == CLIENT_ID
    sent = [(urlsplit(call["url"]).path, call["verify"]) for call in sent_through_site_adapter]
    assert ("/oauth/token", SITE_CA_BUNDLE) in sent and ("/users/settings", SITE_CA_BUNDLE) in sent


class PlainSessionAdapter(DefaultSocialAccountAdapter):
    """A site that only notes what its session sends (no CA, no proxy of its own)."""

    def get_requests_session(self):
        session = super().get_requests_session()
        session.mount("https://", SiteTransport())
        return session


@pytest.mark.parametrize("configured", ["proxy-and-ca", "ca", ""], ids=["proxy-and-ca", "ca-only", "bare"])
@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.PlainSessionAdapter")
def test_proxies_and_ca_bundle_of_the_environment_reach_calls_to_trakt(trakt, monkeypatch, tmp_path, configured):
    # requests honours them under trust_env; the app turns trust_env off only where the
    # environment sets none of them (it saves reading the environment on every request).
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    if "proxy" in configured:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.site.example:3128")
    if "ca" in configured:
        monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/environment-ca.pem")
    sent_through_site_adapter.clear()

    assert oauth.credentials_accepted(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) is True

    [sent] = sent_through_site_adapter
    if "proxy" in configured:
        assert sent["proxies"].get("https") == "http://proxy.site.example:3128"
    else:
        assert not sent["proxies"]
    assert sent["verify"] == ("/etc/ssl/environment-ca.pem" if "ca" in configured else True)


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.RetryingSessionAdapter")
def test_a_refresh_answered_502_is_sent_once_even_by_a_retrying_session(trakt, linked):
    # A retried refresh after a lost answer would spend the single-use token Trakt rotated.
    _user, token = linked(expires_in=-dt.timedelta(hours=1))
    trakt.reset_requests()
    trakt.fail_next("/oauth/token", status=502, times=5)

    result = refresh_token(token)

    assert result.transient
    assert len(trakt.requests_to("/oauth/token")) == 1


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.RetryingSessionAdapter")
def test_the_retrying_session_would_have_retried(trakt):
    """The control for the test above: the site's session as built does retry a 502 POST."""
    from allauth.socialaccount.adapter import get_adapter

    trakt.fail_next("/oauth/token", status=502, times=5)
    session = get_adapter().get_requests_session()
    session.post(f"{trakt_settings.AUTH_URL}/oauth/token", json={})
    assert len(trakt.requests_to("/oauth/token")) == 4


# -- one session per request, connections kept per thread -----------------------------------------


class CannedAnswer:
    """What a site's test double of ``requests.Session.request`` answers (a plain dict of headers)."""

    def __init__(self, document, headers=None):
        self.status_code = 200
        self.headers = CaseInsensitiveDict({"Content-Type": "application/json"}) if headers is None else headers
        self.content = json.dumps(document).encode()
        self.text = self.content.decode()

    def json(self):
        return json.loads(self.text)


def test_each_request_uses_a_session_made_for_it_so_a_sites_test_double_is_honoured(monkeypatch):
    """allauth's session binds ``session.request`` when it is made (its timeout, a partial): a
    session kept from an earlier call would call the test double of an earlier test."""
    for name in ("Old Double", "New Double"):

        def double(session, method, url, *args, name=name, **kwargs):
            return CannedAnswer({"user": {"username": name}})

        monkeypatch.setattr(requests.Session, "request", double)
        assert get_user_settings(CLIENT_ID, "an-access-token")["user"]["username"] == name


def test_headers_of_an_answer_are_read_whatever_the_case_of_their_names(monkeypatch):
    # requests' headers are a CaseInsensitiveDict; a test double's (allauth's MockedResponse
    # among them) may be a plain dict with names in lower case.
    def double(session, method, url, *args, **kwargs):
        return CannedAnswer({"user": {"username": "Watcher"}}, headers={"content-type": "application/json"})

    monkeypatch.setattr(requests.Session, "request", double)
    assert get_user_settings(CLIENT_ID, "an-access-token")["user"]["username"] == "Watcher"


class CountingSessionAdapter(DefaultSocialAccountAdapter):
    sessions_made = 0

    def get_requests_session(self):
        CountingSessionAdapter.sessions_made += 1
        return super().get_requests_session()


class KeepAliveTrakt(http.server.BaseHTTPRequestHandler):
    """An HTTP/1.1 server that keeps connections open, noting the client port of each request."""

    protocol_version = "HTTP/1.1"
    client_ports: list[int] = []

    def do_GET(self):
        KeepAliveTrakt.client_ports.append(self.client_address[1])
        body = json.dumps({"user": {"username": "Watcher"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def keep_alive_trakt():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveTrakt)
    server.daemon_threads = True
    KeepAliveTrakt.client_ports = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@override_settings(SOCIALACCOUNT_ADAPTER=f"{__name__}.CountingSessionAdapter")
def test_requests_of_a_thread_share_its_connection_and_threads_have_their_own(keep_alive_trakt):
    CountingSessionAdapter.sessions_made = 0
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers_with(API_URL=keep_alive_trakt)):

        def three_calls():
            for _ in range(3):
                get_user_settings(CLIENT_ID, "an-access-token")

        three_calls()
        worker = threading.Thread(target=three_calls)
        worker.start()
        worker.join()

    assert CountingSessionAdapter.sessions_made == 6  # a fresh session of the site's for every request
    here, there = KeepAliveTrakt.client_ports[:3], KeepAliveTrakt.client_ports[3:]
    assert len(set(here)) == 1 and len(set(there)) == 1  # one kept connection per thread...
    assert here[0] != there[0]  # ...each thread its own
