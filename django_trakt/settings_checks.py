"""System checks of every setting's type and range, and of settings nobody reads.

Ids (README "System checks"): ``E101``-``E124`` one per ``TRAKT_*`` setting, ``E130`` for
``SOCIALACCOUNT_PROVIDERS["trakt"]`` itself and ``E131``-``E144`` one per key of it, ``W101``
for a key of it that nothing reads, ``W102`` for a ``TRAKT_*`` setting that looks like a
typo of a known one. What a right value is lives in ``conf.SETTINGS`` and
``conf.PROVIDER_KEYS``, the same table the settings are read through at run time.

A wrong value never breaks a page at run time (the default stands in, see
``conf.Setting.read``), so these checks are what makes it loud. A wrong type is always an
error, in development too: they are plain checks, not deployment checks.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core import checks

from django_trakt.conf import PROVIDER_ID, PROVIDER_KEYS, PROVIDERS_CHECK_ID, SETTINGS, Number, Setting

PROVIDER = f'SOCIALACCOUNT_PROVIDERS["{PROVIDER_ID}"]'
SETTING_PREFIX = "TRAKT_"
# How alike a name must be to a known one to be called a typo of it (difflib's ratio).
# 0.8 catches a letter dropped, doubled or swapped (TRAKT_TOKEN_KEY, TRAKT_CACHES) and
# leaves a site's own names alone (TRAKT_CLIENT_ID, TRAKT_CLIENT_SECRET).
TYPO_CUTOFF = 0.8


# The field names of allauth's app dict: the only dict keys a message about a secret names
# (any other key might be a secret itself, as in TRAKT_TOKEN_KEYS = {<key>: ...}).
APP_FIELDS = ("name", "provider_id", "client_id", "secret", "key", "settings", "certificate_key")


def _kinds(value: Any) -> str:
    """The types in ``value``, never a value: what a check may say of a secret."""
    kind = type(value).__name__
    if isinstance(value, dict):
        fields = [f"{key}: {type(item).__name__}" for key, item in value.items() if key in APP_FIELDS]
        others = sum(1 for key in value if key not in APP_FIELDS)
        if others:
            fields.append(f"{others} other key{'s' if others > 1 else ''}")
        return f"{kind} ({', '.join(fields) or 'empty'})"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = ", ".join(sorted({_kinds(item) for item in value}))
        return f"{kind} of {items}" if items else f"{kind} (empty)"
    return kind


def _shown(setting: Setting, value: Any) -> str:
    if setting.secret:
        return f"a {_kinds(value)}"  # never a key or a client secret in the check's output
    kind = type(value).__name__
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({kind})"


def _hint(setting: Setting, where: str, value: Any) -> str:
    hint = f"Set {where} = {setting.example or repr(setting.default)}"
    if setting.default is not None and setting.example:
        hint += f", or remove it for the default ({setting.default!r})"
    hint += "."
    if isinstance(setting, Number):
        if isinstance(value, str):
            hint += " Values read from the environment are strings: convert them with int() or float()."
        # What the site runs with until the setting is fixed (conf.Number.read).
        hint += f" Meanwhile django-trakt uses {setting.read(value)!r}."
    return hint


def _problems(setting: Setting, where: str, value: Any) -> list[checks.CheckMessage]:
    """The error of ``setting`` when ``value`` (read at ``where``) is wrong; none when unset."""
    if value is None:
        return []
    if not setting.valid(value):
        return [
            checks.Error(
                f"{where} must be {setting.expected}; it is {_shown(setting, value)}.",
                hint=_hint(setting, where, value),
                id=setting.check_id,
            )
        ]
    if setting.alias_of:
        names = getattr(settings, setting.alias_of, None) or {}
        alias = value or setting.default  # "" means the default at run time
        if alias not in names:
            known = ", ".join(repr(name) for name in names) or "none"
            return [
                checks.Error(
                    f"{where} = {alias!r} names no entry of {setting.alias_of} (it has: {known}).",
                    hint=f"Add {alias!r} to {setting.alias_of}, or set {where} to one of its names.",
                    id=setting.check_id,
                )
            ]
    return []


@checks.register()
def check_trakt_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E101-E129: every ``TRAKT_*`` setting the app reads has the type (and range) it must have."""
    return [
        message
        for name, setting in SETTINGS.items()
        for message in _problems(setting, name, getattr(settings, name, None))
    ]


@checks.register()
def check_provider_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E130: ``SOCIALACCOUNT_PROVIDERS["trakt"]`` is no dict; E131-E144: one of its keys has the wrong type."""
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None)
    provider = providers.get(PROVIDER_ID) if isinstance(providers, dict) else None
    if providers is not None and not isinstance(providers, dict):
        where, value = "SOCIALACCOUNT_PROVIDERS", providers
    elif provider is not None and not isinstance(provider, dict):
        where, value = PROVIDER, provider
    else:
        return [
            message
            for key, setting in PROVIDER_KEYS.items()
            for message in _problems(setting, f'{PROVIDER}["{key}"]', (provider or {}).get(key))
        ]
    return [
        checks.Error(
            f"{where} must be a dict; it is a {type(value).__name__}: django-trakt uses none of it.",
            hint=f'Write {PROVIDER} as a dict: {{"APP": {{"client_id": ..., "secret": ...}}, "TIMEOUT": 10}}.',
            id=PROVIDERS_CHECK_ID,
        )
    ]


def _close_match(name: str, known: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, known, n=1, cutoff=TYPO_CUTOFF)
    return matches[0] if matches else None


@checks.register()
def check_unknown_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W101: a key of ``SOCIALACCOUNT_PROVIDERS["trakt"]`` nothing reads; W102: a ``TRAKT_*`` typo.

    A mistyped setting is silently ignored by Django, and its default then applies: the
    one mistake no type check can see.
    """
    messages: list[checks.CheckMessage] = []
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", None)
    provider = providers.get(PROVIDER_ID) if isinstance(providers, dict) else None
    upper_keys = {key.upper(): key for key in PROVIDER_KEYS}
    for key in provider if isinstance(provider, dict) else ():
        if key in PROVIDER_KEYS:
            continue
        name = str(key)
        if SETTING_PREFIX + name.upper() in SETTINGS:
            # A TRAKT_* setting written into the provider's dict ("PAGE_TIMEOUT").
            hint = f"Did you mean the setting {SETTING_PREFIX + name.upper()}? It is a setting of its own."
        elif name.lower() in ("client_id", "secret", "key"):
            # allauth reads the credentials from "APP" only: beside it, a secret is ignored.
            hint = f'The app\'s credentials go inside "APP": {PROVIDER}["APP"] = {{"client_id": ..., "secret": ...}}.'
        elif match := _close_match(name.upper(), list(upper_keys)):
            hint = f'Did you mean "{upper_keys[match]}"?'
        else:
            hint = f"Remove it. The keys read are: {', '.join(PROVIDER_KEYS)}."
        messages.append(
            checks.Warning(
                f"{PROVIDER} has the key {name!r}, which neither django-trakt nor allauth reads: it has no effect.",
                hint=hint,
                id="django_trakt.W101",
            )
        )
    for name in sorted(dir(settings)):
        if not name.startswith(SETTING_PREFIX) or name in SETTINGS:
            continue
        key = name[len(SETTING_PREFIX) :]
        if key in PROVIDER_KEYS:
            # A provider key written as a setting of its own (TRAKT_TIMEOUT, TRAKT_API_URL).
            suggestion = f'{PROVIDER}["{key}"]'
            fix = f"Move its value to {suggestion}"
        elif suggestion := _close_match(name, list(SETTINGS)) or "":
            fix = f"Rename it to {suggestion}"
        else:
            continue  # a name of the site's own (TRAKT_CLIENT_ID): not ours to judge
        messages.append(
            checks.Warning(
                f"{name} is not a setting of django-trakt, so it has no effect: did you mean {suggestion}?",
                hint=f"{fix}; until then the default applies.",
                id="django_trakt.W102",
            )
        )
    return messages
