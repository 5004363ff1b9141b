"""Shared fixtures: the local Trakt in-process, bound to the test settings' hosts."""

from __future__ import annotations

import pytest
from django.conf import settings

from django_trakt.testing import TraktEmulator

CALLBACK_URL = "http://testserver/accounts/trakt/login/callback/"


@pytest.fixture
def trakt():
    """A fresh local Trakt with the test site's app and one user, answering in-process."""
    hosts = settings.SOCIALACCOUNT_PROVIDERS["trakt"]
    emulator = TraktEmulator(auth_url=hosts["AUTH_URL"], api_url=hosts["API_URL"], web_url=hosts["WEB_URL"])
    emulator.add_app(
        settings.TRAKT_CLIENT_ID, settings.TRAKT_CLIENT_SECRET, name="Test site", redirect_uris=[CALLBACK_URL]
    )
    emulator.add_user("Watcher", name="Wanda Watcher")
    with emulator.mock():
        yield emulator
