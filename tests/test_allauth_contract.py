"""allauth's own provider test suite (``OAuth2TestsMixin``) against the Trakt provider.

The mixin is the contract every allauth provider meets: sign-in with and without PKCE,
the signup redirect, connecting an account, and, with ``SOCIALACCOUNT_STORE_TOKENS``,
``SocialToken.token``/``token_secret`` holding the access and refresh tokens as allauth
documents them. It comes unmodified from the sdist of the installed django-allauth
(``tests/allauth_suite.py``); what a provider's test supplies is all this module adds: the
provider's id, its mocked profile answer (Trakt's ``/users/settings``) and the account's
expected ``to_str``, as allauth's own provider tests do (e.g. its GitHub tests).

allauth's mocking patches ``requests.Session.request`` for each block of calls, so these
tests also prove that calls to Trakt use a session made for that call from the site's
``get_requests_session()`` (a session kept from an earlier sign-in would call an old mock).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from django.conf import settings
from django.test import TestCase, override_settings

from tests import allauth_suite

suite = allauth_suite.load()
MockedResponse = suite.MockedResponse

#: Trakt's answer to GET /users/settings (Trakt's API docs; its "account" part shortened).
PROFILE = {
    "user": {
        "username": "sean",
        "private": False,
        "name": "Sean Rudford",
        "vip": True,
        "vip_ep": False,
        "ids": {"slug": "sean", "trakt": 1, "uuid": "4f4c4e6d-6a8e-4b8b-9f3b-1d0e2c7a9b55"},
        "joined_at": "2010-09-25T17:49:25.000Z",
        "location": "SF",
        "images": {"avatar": {"full": "https://walter-r2.trakt.tv/images/users/000/000/001/avatars/cf6c1d6e4f.jpg"}},
    },
    "account": {"timezone": "America/Los_Angeles", "time_24hr": False},
}

#: Trakt's hosts as the test settings have them, without an ``APP``: like allauth's own test
#: settings, so the mixin's ``setup_app`` creates the ``SocialApp`` row it works with.
PROVIDERS = {
    "trakt": {key: value for key, value in settings.SOCIALACCOUNT_PROVIDERS["trakt"].items() if key != "APP"},
}


@override_settings(SOCIALACCOUNT_PROVIDERS=PROVIDERS)
class TraktProviderContractTests(suite.OAuth2TestsMixin, TestCase):
    provider_id = "trakt"

    def get_mocked_response(self):
        return MockedResponse(HTTPStatus.OK, json.dumps(PROFILE), {"Content-Type": "application/json; charset=utf-8"})

    def get_expected_to_str(self):
        return "sean"
