"""Checks of the settings themselves: one id per kind of fault, the message naming the setting.

- ``E101``: a setting (or ``SOCIALACCOUNT_PROVIDERS["trakt"]`` itself) has the wrong type or
  is out of range;
- ``E102``: a setting names something that is not there (a cache, a storage, a function);
- ``W101``: a name django-trakt does not read, close to one it does ("did you mean");
- ``W103``: a setting removed in 0.2 is still set: it has no effect, its value is now fixed.

What a right value is lives in ``conf.SETTINGS``, the table the settings are read through
at run time. A wrong value never breaks a page (the default stands in, see
``conf.values.Setting.read``), so these checks are what makes it loud. A wrong type is an
error in development too: these are plain checks, not deployment checks. allauth's own keys
of ``SOCIALACCOUNT_PROVIDERS["trakt"]`` (``APP``, ``SCOPE``...) are allauth's to check.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core import checks

from django_trakt import tasks
from django_trakt.conf import PROVIDER, PROVIDER_ID, SETTING_PREFIX, SETTINGS, Setting, trakt_settings
from django_trakt.conf.values import Number
from django_trakt.device import flow
from django_trakt.internal.links import pending
from django_trakt.internal.pages import image_fetch, image_views, images, page_budget, watchlist, watchlist_items

WRONG = "django_trakt.E101"
MISSING = "django_trakt.E102"
UNKNOWN = "django_trakt.W101"
REMOVED_ID = "django_trakt.W103"

# How alike a name must be to a known one to be called a typo of it (difflib's ratio).
# 0.8 catches a letter dropped, doubled or swapped (TRAKT_TOKEN_KEY, TRAKT_CACHES) and
# leaves a site's own names alone (TRAKT_CLIENT_ID, TRAKT_CLIENT_SECRET).
TYPO_CUTOFF = 0.8

#: The keys of ``SOCIALACCOUNT_PROVIDERS["trakt"]`` that allauth reads for an OAuth2 provider
#: (allauth.socialaccount: adapter, OAuth2Provider, providers.registry). Only their names
#: are known here, so a key beside them is not called unknown: their values are allauth's.
ALLAUTH_KEYS = (
    "APP",
    "APPS",
    "OAUTH_PKCE_ENABLED",
    "SCOPE",
    "AUTH_PARAMS",
    "VERIFIED_EMAIL",
    "EMAIL_AUTHENTICATION",
    "EMAIL_AUTHENTICATION_AUTO_CONNECT",
    "provider_class",
)


@dataclass(frozen=True)
class Removed:
    """A setting removed in 0.2: the constant that holds its value now, and why it is fixed."""

    module: ModuleType
    constant: str
    unit: str  # " seconds", " bytes", or "" for a count
    because: str
    instead: str = ""  # what a site that changed it can do now

    def value(self) -> str:
        value = getattr(self.module, self.constant)
        shown = f"{value:g}" if isinstance(value, float) else repr(value)
        return f"{shown}{self.unit} ({self.module.__name__}.{self.constant})"


_FIXED_IMAGE_BOUND = "Trakt's images are far within it, and it bounds what an image host can make the site spend"
_BUDGET = "renders may spend a fifth of the 500 calls per 5 minutes Trakt allows the app"
_NO_RENDER_CALLS = "With a task backend (TRAKT_TASK_BACKEND) renders never call Trakt at all."
_CODES = "a person needs one or two codes; more is a script spending the site's Trakt calls"

#: Every setting removed in 0.2; each still set gets W103 for one release.
REMOVED: dict[str, Removed] = {
    "TRAKT_WATCHLIST_STALE_TTL": Removed(
        watchlist, "WATCHLIST_STALE_TTL", " seconds", "a week of the last good copy outlasts a Trakt outage"
    ),
    "TRAKT_WATCHLIST_MAX_ITEMS": Removed(
        watchlist_items,
        "WATCHLIST_MAX_ITEMS",
        "",
        "each page of items costs the page budget, and more is a list page, not a widget",
        "Pass limit= to the tag (up to that), or show a long list from a view with django_trakt.client.",
    ),
    "TRAKT_PAGE_RETRY_WAIT": Removed(
        watchlist, "PAGE_RETRY_WAIT", " seconds", "a render never sleeps: the cached copy or the next render shows it"
    ),
    "TRAKT_FAILURE_BACKOFF": Removed(
        watchlist, "FAILURE_BACKOFF", " seconds", "a failing list is left alone that long (or a 429's Retry-After)"
    ),
    "TRAKT_WATCHLIST_NOT_FOUND_TTL": Removed(
        watchlist, "WATCHLIST_NOT_FOUND_TTL", " seconds", "an unknown or private username rarely changes"
    ),
    "TRAKT_PAGE_CALL_BUDGET": Removed(page_budget, "PAGE_CALL_BUDGET", "", _BUDGET, _NO_RENDER_CALLS),
    "TRAKT_PAGE_USER_CALL_BUDGET": Removed(page_budget, "PAGE_USER_CALL_BUDGET", "", _BUDGET, _NO_RENDER_CALLS),
    "TRAKT_PAGE_CALL_PERIOD": Removed(page_budget, "PAGE_CALL_PERIOD", " seconds", "it is Trakt's own window"),
    "TRAKT_IMAGE_MAX_BYTES": Removed(image_fetch, "IMAGE_MAX_BYTES", " bytes", _FIXED_IMAGE_BOUND),
    "TRAKT_IMAGE_TIMEOUT": Removed(image_fetch, "IMAGE_TIMEOUT", " seconds", _FIXED_IMAGE_BOUND),
    "TRAKT_IMAGE_MAX_REDIRECTS": Removed(image_fetch, "IMAGE_MAX_REDIRECTS", "", _FIXED_IMAGE_BOUND),
    "TRAKT_IMAGE_PREFIX": Removed(
        images,
        "IMAGE_PREFIX",
        "",
        "TRAKT_IMAGE_STORAGE chooses where the images are kept",
        "To keep them apart, name a storage of their own in STORAGES as TRAKT_IMAGE_STORAGE. Images stored "
        "under the old folder are fetched again; delete that folder.",
    ),
    "TRAKT_IMAGE_MAX_AGE": Removed(
        image_views, "IMAGE_MAX_AGE", " seconds", "a fetched image never changes (a new one has a new URL)"
    ),
    "TRAKT_IMAGE_RETRY_AFTER": Removed(
        images, "IMAGE_RETRY_AFTER", " seconds", "a broken image host is not asked again on every render"
    ),
    "TRAKT_DEVICE_START_LIMIT": Removed(flow, "DEVICE_START_LIMIT", "", _CODES),
    "TRAKT_DEVICE_START_PERIOD": Removed(flow, "DEVICE_START_PERIOD", " seconds", _CODES),
    "TRAKT_PENDING_SIGNUP_MAX_AGE": Removed(
        pending, "PENDING_SIGNUP_MAX_AGE", " seconds", "an hour is far longer than anyone spends on the signup form"
    ),
    "TRAKT_TASK_RETRIES": Removed(
        tasks, "TASK_RETRIES", "", "past those retries the next scheduled refresh_trakt_tokens picks the link up"
    ),
}


# -- what a message may show of a value -------------------------------------------------------------------


def _kinds(value: Any) -> str:
    """The types in ``value``, never a value: what a check may say of a secret."""
    kind = type(value).__name__
    if isinstance(value, dict):
        return f"{kind} ({len(value)} key{'s' if len(value) != 1 else ''})" if value else f"{kind} (empty)"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = ", ".join(sorted({_kinds(item) for item in value}))
        return f"{kind} of {items}" if items else f"{kind} (empty)"
    return kind


def _shown(setting: Setting, value: Any) -> str:
    if setting.secret:
        return f"a {_kinds(value)}"  # never a key in the check's output
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def _hint(setting: Setting, value: Any) -> str:
    hint = f"Set {setting.where} = {setting.example or repr(setting.default)}"
    if setting.default is not None and setting.example:
        hint += f", or remove it for the default ({setting.default!r})"
    hint += "."
    if isinstance(setting, Number):
        if isinstance(value, str):
            hint += " Values read from the environment are strings: convert them with int() or float()."
        # What the site runs with until the setting is fixed (conf.values.Number.read).
        hint += f" Meanwhile django-trakt uses {setting.read(value)!r}."
    return hint


def _problems(setting: Setting, value: Any) -> list[checks.CheckMessage]:
    """E101 or E102 for ``value``, as written for ``setting``; none when it is unset or right."""
    if value is None:
        return []
    if not setting.valid(value):
        message = f"{setting.where} must be {setting.expected}; it is {_shown(setting, value)}."
        return [checks.Error(message, hint=_hint(setting, value), id=WRONG)]
    missing = setting.missing(value) if setting.missing else None
    if missing is None:
        return []
    what, hint = missing
    return [checks.Error(f"{setting.where} = {value!r} {what}.", hint=hint, id=MISSING)]


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E101, E102: each setting read has the right type and range, and what it names exists."""
    found: list[checks.CheckMessage] = []
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None)
    provider = providers.get(PROVIDER_ID) if isinstance(providers, dict) else None
    for where, value in (("SOCIALACCOUNT_PROVIDERS", providers), (PROVIDER, provider)):
        if value is not None and not isinstance(value, dict):
            found.append(
                checks.Error(
                    f"{where} must be a dict; it is a {type(value).__name__}: django-trakt uses none of it.",
                    hint=f'Write {PROVIDER} as a dict: {{"APP": {{"client_id": ..., "secret": ...}}, "TIMEOUT": 10}}.',
                    id=WRONG,
                )
            )
            break
    for setting in SETTINGS.values():
        found += _problems(setting, trakt_settings.written(setting))  # a provider that is no dict: unset keys
    return found


# -- names nothing reads ----------------------------------------------------------------------------------


def _close_match(name: str, known: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, known, n=1, cutoff=TYPO_CUTOFF)
    return matches[0] if matches else None


def _unknown_provider_key(key: Any) -> checks.CheckMessage | None:
    ours = [setting.name for setting in SETTINGS.values() if setting.provider_key]
    known = {name.upper(): name for name in [*ours, *ALLAUTH_KEYS]}
    name = str(key)
    if name in known.values():
        return None
    setting = SETTINGS.get(name.upper())
    if setting is not None and not setting.provider_key:
        # A TRAKT_* setting written into the provider's dict ("PAGE_TIMEOUT").
        hint = f"Did you mean the setting {setting.where}? It is a setting of its own."
    elif name.lower() in ("client_id", "secret", "key"):
        # allauth reads the credentials from "APP" only: beside it, a secret is ignored.
        hint = f'The app\'s credentials go inside "APP": {PROVIDER}["APP"] = {{"client_id": ..., "secret": ...}}.'
    elif match := _close_match(name.upper(), list(known)):
        hint = f'Did you mean "{known[match]}"?'
    else:
        hint = f"Remove it. The keys read are: {', '.join(known.values())}."
    return checks.Warning(
        f"{PROVIDER} has the key {name!r}, which neither django-trakt nor allauth reads: it has no effect.",
        hint=hint,
        id=UNKNOWN,
    )


def _unknown_setting(name: str) -> checks.CheckMessage | None:
    key = name.removeprefix(SETTING_PREFIX)
    setting = SETTINGS.get(key)
    if setting is not None and setting.provider_key:
        # A provider key written as a setting of its own (TRAKT_TIMEOUT, TRAKT_API_URL).
        suggestion, fix = setting.where, f"Move its value to {setting.where}"
    else:
        known = [setting.where for setting in SETTINGS.values() if not setting.provider_key]
        suggestion = _close_match(name, known) or ""
        fix = f"Rename it to {suggestion}"
        if not suggestion:
            return None  # a name of the site's own (TRAKT_CLIENT_ID): not ours to judge
    return checks.Warning(
        f"{name} is not a setting of django-trakt, so it has no effect: did you mean {suggestion}?",
        hint=f"{fix}; until then the default applies.",
        id=UNKNOWN,
    )


@checks.register()
def check_unknown_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W101: a ``TRAKT_*`` setting or a key of ``SOCIALACCOUNT_PROVIDERS["trakt"]`` that nothing reads.

    A mistyped setting is silently ignored by Django, and its default then applies: the
    one mistake no type check can see.
    """
    provider = trakt_settings.provider_settings
    found = [_unknown_provider_key(key) for key in provider]
    ours = {setting.where for setting in SETTINGS.values()}
    found += [
        _unknown_setting(name)
        for name in sorted(dir(settings))
        if name.startswith(SETTING_PREFIX) and name not in ours and name not in REMOVED
    ]
    return [message for message in found if message is not None]


@checks.register()
def check_removed_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W103: a setting removed in 0.2 is still set; it has no effect (for one release, then W101's silence)."""
    return [
        checks.Warning(
            f"{name} was removed in 0.2: it has no effect; its value is now fixed at {removed.value()} "
            f"because {removed.because}.",
            hint=" ".join(filter(None, [f"Remove {name} from your settings.", removed.instead])),
            id=REMOVED_ID,
        )
        for name, removed in REMOVED.items()
        if getattr(settings, name, None) is not None
    ]
