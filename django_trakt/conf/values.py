"""What a setting of django-trakt may be: its kinds (a number, the token keys...) and the tests of a value.

:mod:`django_trakt.conf` lists the settings with these; the system checks
(``checks/settings.py``) report a value they refuse, and at run time the default stands in
for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from django_trakt.internal.core.numbers import finite_number

PROVIDER_ID = "trakt"
PROVIDER = f'SOCIALACCOUNT_PROVIDERS["{PROVIDER_ID}"]'
SETTING_PREFIX = "TRAKT_"


def unchanged(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: where a site writes it, what a right value is, and what the app then uses."""

    name: str  # the accessor's name: trakt_settings.CACHE reads TRAKT_CACHE
    expected: str  # completes "<setting> must be ..." in check E101's message
    valid: Callable[[Any], bool]  # the type (and range); None (unset) never reaches it
    default: Any = None
    example: str = ""  # a right value for the check's hint ("": the default's repr)
    secret: bool = False  # the check never shows the value (keys)
    provider_key: bool = False  # a key of SOCIALACCOUNT_PROVIDERS["trakt"], not a TRAKT_* setting
    # For a value of the right type that names something (a cache, a storage, a function):
    # (what is missing, the hint) when that something is not there (check E102), else None.
    missing: Callable[[Any], tuple[str, str] | None] | None = None
    clean: Callable[[Any], Any] = unchanged  # the value in force -> what the app uses

    @property
    def where(self) -> str:
        """The setting as a site writes it: ``TRAKT_CACHE``, ``SOCIALACCOUNT_PROVIDERS["trakt"]["TIMEOUT"]``."""
        return f'{PROVIDER}["{self.name}"]' if self.provider_key else SETTING_PREFIX + self.name

    def read(self, value: Any) -> Any:
        """The value in force at run time: the default when it is unset or refused."""
        return self.default if value is None or not self.valid(value) else value


@dataclass(frozen=True)
class Number(Setting):
    """A number, at least ``minimum`` (or above it, when ``exclusive``)."""

    minimum: float = 0
    exclusive: bool = False

    def read(self, value: Any) -> Any:
        # Numeric strings ("300") are still understood at run time (they always were); the
        # check reports them, since a string is where a typo or an unconverted environment
        # value hides. Below the minimum: the minimum; a minimum that is itself refused (a
        # timeout of 0) cannot stand in, so the default does.
        amount = finite_number(value)
        if amount is None:
            return self.default
        if amount < self.minimum or (self.exclusive and amount == self.minimum):
            amount = self.default if self.exclusive else self.minimum
        return float(amount)


@dataclass(frozen=True)
class TokenKeys(Setting):
    """``TRAKT_TOKEN_KEYS``: a list of keys, or one key as a string."""

    def read(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (str, bytes)):
            return [value]
        if isinstance(value, (list, tuple)):
            return list(value)
        # Not a list (check E101): kept as one key, which crypto refuses as malformed.
        # Falling back to the keys derived from SECRET_KEY would encrypt new tokens with a
        # key the site never chose, lost once the setting is fixed.
        return [value]


def number(name: str, default: float, minimum: float = 0, *, exclusive: bool = False, **more: Any) -> Number:
    """A number (int or float) of seconds or per second: every number setting is one."""
    bound = f"greater than {minimum:g}" if exclusive else f"{minimum:g} or more"

    def valid(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False  # True is an int to Python, never a count to a reader of settings.py
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return value > minimum if exclusive else value >= minimum

    return Number(
        name, f"a number (int or float), {bound}", valid, default, minimum=minimum, exclusive=exclusive, **more
    )


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if not value:
        return True  # empty: the default host, as when unset
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_header_value(value: Any) -> bool:
    # A CR or LF in a header value makes requests refuse every request to Trakt.
    return isinstance(value, str) and value.isprintable()


def is_strings(
    value: Any, *, one_string: bool = False, containers: tuple[type[Collection[Any]], ...] = (list, tuple)
) -> bool:
    if one_string and isinstance(value, str):
        return True
    return isinstance(value, containers) and all(isinstance(item, str) for item in value)


def is_token_keys(value: Any) -> bool:
    # The order matters (the first key encrypts), so a set is refused; each key's form is
    # checked by django_trakt.E001.
    return isinstance(value, (str, bytes, list, tuple))


def entry_of(setting: str) -> Callable[[Any], tuple[str, str] | None]:
    """What is missing when a name (``""``: ``"default"``) is no entry of ``setting`` (CACHES, STORAGES)."""

    def missing(value: Any) -> tuple[str, str] | None:
        names = getattr(settings, setting, None) or {}
        alias = value or "default"
        if alias in names:
            return None
        known = ", ".join(repr(name) for name in names) or "none"
        return (
            f"names no entry of {setting} (it has: {known})",
            f"Add {alias!r} to {setting}, or name one of its entries.",
        )

    return missing


def import_callable(path: str) -> Callable[..., Any] | None:
    from django.utils.module_loading import import_string

    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if callable(found) else None


def no_callable(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or import_callable(value) is not None:
        return None
    return ("is no dotted path of a callable that imports", "Name a function the site's code defines.")


def origin_of(url: Any) -> str | None:
    """``scheme://host:port`` of an http(s) URL, the port always written out; None for anything else."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    host = parts.hostname.rstrip(".").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def is_origins(value: Any) -> bool:
    # Origins only: a path, query or credentials would suggest a narrower trust than is given.
    return is_strings(value) and all(
        origin_of(item) is not None and urlsplit(item.strip()).path in ("", "/") and not urlsplit(item).query
        for item in value
    )
