"""Every setting is type-checked by a system check with its own id (E101-E144), settings nobody
reads are reported (W101, W102), the checks are registered, and a wrong value never breaks
the site at run time."""

from __future__ import annotations

import math

import pytest
from django.core.checks import run_checks
from django.core.checks.registry import registry

from django_trakt import settings_checks
from django_trakt.conf import LIBRARY_USER_AGENT, PROVIDER_KEYS, SETTINGS, trakt_settings
from django_trakt.exceptions import TraktConfigurationError
from django_trakt.links import crypto
from django_trakt.provider import TraktProvider

GOOD_KEY = "SmUfeQ2TCpyiwLIkUdEVdg0mC_L5KrdCR_kg3ipfm2E="
PROVIDER = 'SOCIALACCOUNT_PROVIDERS["trakt"]'


def fake_dns(host):
    return ["93.184.216.34"]


NOT_CALLABLE = 42

# Number settings: their id, the smallest value allowed, and whether only integers are.
NUMBERS = {
    "TRAKT_WATCHLIST_TTL": ("django_trakt.E103", 0, False),
    "TRAKT_WATCHLIST_STALE_TTL": ("django_trakt.E104", 1, False),
    "TRAKT_WATCHLIST_MAX_ITEMS": ("django_trakt.E105", 1, True),
    "TRAKT_PAGE_TIMEOUT": ("django_trakt.E106", 0.1, False),
    "TRAKT_PAGE_RETRY_WAIT": ("django_trakt.E107", 0, False),
    "TRAKT_FAILURE_BACKOFF": ("django_trakt.E108", 0, False),
    "TRAKT_IMAGE_MAX_BYTES": ("django_trakt.E110", 1, True),
    "TRAKT_IMAGE_TIMEOUT": ("django_trakt.E111", 0.1, False),
    "TRAKT_IMAGE_MAX_REDIRECTS": ("django_trakt.E112", 0, True),
    "TRAKT_IMAGE_MAX_AGE": ("django_trakt.E115", 0, True),
    "TRAKT_IMAGE_RETRY_AFTER": ("django_trakt.E116", 0, False),
    "TRAKT_DEVICE_START_LIMIT": ("django_trakt.E118", 1, True),
    "TRAKT_DEVICE_START_PERIOD": ("django_trakt.E119", 1, False),
    "TRAKT_PAGE_CALL_BUDGET": ("django_trakt.E120", 0, True),
    "TRAKT_PAGE_USER_CALL_BUDGET": ("django_trakt.E121", 0, True),
    "TRAKT_PAGE_CALL_PERIOD": ("django_trakt.E122", 1, False),
    "TRAKT_WATCHLIST_NOT_FOUND_TTL": ("django_trakt.E123", 0, False),
    "TRAKT_PENDING_SIGNUP_MAX_AGE": ("django_trakt.E124", 60, False),
    "TRAKT_REFRESH_RATE": ("django_trakt.E127", 0, False),
    "TRAKT_TASK_RETRIES": ("django_trakt.E128", 0, True),
}


def _number_cases(minimum, integer):
    """Wrong: a string, a bool, no finite number, a list, below the minimum; right: from the minimum up."""
    wrong = ["5", True, float("nan"), float("inf"), [5], minimum - 1]
    right = [minimum, minimum + 1, 3600]
    if integer:
        wrong.append(minimum + 0.5)
    else:
        right.append(minimum + 0.25)
    return wrong, right


# The other TRAKT_* settings: (id, wrong values, right values).
OTHERS = {
    "TRAKT_TASK_BACKEND": ("django_trakt.E125", [5, ["default"]], ["default", "trakt"]),
    "TRAKT_TASK_QUEUE": ("django_trakt.E126", [5, ["default"]], ["default", "trakt-refresh"]),
    "TRAKT_TOKEN_KEYS": ("django_trakt.E101", [{GOOD_KEY}, 5, {"key": GOOD_KEY}], [[GOOD_KEY], (GOOD_KEY,), GOOD_KEY]),
    "TRAKT_CACHE": ("django_trakt.E102", [5, ["default"], "no-such-cache"], ["default", ""]),
    "TRAKT_IMAGE_HOSTS": (
        "django_trakt.E109",
        [5, ["media.trakt.tv", 5], {"media.trakt.tv": 1}],
        [
            ["media.trakt.tv", ".example.com"],
            ("media.trakt.tv",),
            {"media.trakt.tv"},
            "media.trakt.tv",
            [],
        ],
    ),
    "TRAKT_IMAGE_STORAGE": ("django_trakt.E113", [5, "no-such-storage"], ["default", ""]),
    "TRAKT_IMAGE_PREFIX": ("django_trakt.E114", [5, ["cached"]], ["cached/trakt", ""]),
    "TRAKT_IMAGE_RESOLVER": (
        "django_trakt.E117",
        [5, "tests.test_settings_checks.no_such_resolver", "no_dots", "tests.test_settings_checks.NOT_CALLABLE"],
        ["tests.test_settings_checks.fake_dns", fake_dns],
    ),
    "TRAKT_DEVELOPMENT_IMAGE_ORIGINS": (
        "django_trakt.E129",
        ["http://127.0.0.1:8765", ["127.0.0.1:8765"], ["http://127.0.0.1:8765/images"], ["ftp://h"], [5]],
        [["http://127.0.0.1:8765"], ("http://localhost:8765/",), []],
    ),
}

# Keys of SOCIALACCOUNT_PROVIDERS["trakt"]: (id, wrong values, right values).
KEYS = {
    "AUTH_URL": ("django_trakt.E131", [5, "auth.trakt.tv", "ftp://auth.trakt.tv"], ["https://auth.trakt.tv", ""]),
    "API_URL": (
        "django_trakt.E132",
        [5, "api.trakt.tv", "https://"],
        ["http://127.0.0.1:8765", "https://api.trakt.tv/"],
    ),
    "WEB_URL": ("django_trakt.E133", [5, "trakt.tv"], ["https://trakt.tv"]),
    "USER_AGENT": ("django_trakt.E134", [5, "mysite/2.1\r\nX-Injected: 1"], ["mysite/2.1", ""]),
    "REDIRECT_URI": (
        "django_trakt.E135",
        [5, b"https://example.com/callback/"],
        ["https://example.com/accounts/trakt/login/callback/", "urn:ietf:wg:oauth:2.0:oob", ""],
    ),
    "TIMEOUT": ("django_trakt.E136", [0, -1, "10", True, float("inf")], [0.2, 10, 30.5]),
    "APP": (
        "django_trakt.E137",
        ["client:secret", {"client_id": 5, "secret": "s"}, {"client_id": "c", "secret": "s", "settings": []}],
        [{"client_id": "c", "secret": "s"}, {"client_id": "c", "secret": "s", "key": "", "settings": {"hidden": True}}],
    ),
    "APPS": (
        "django_trakt.E138",
        [{"client_id": "c", "secret": "s"}, ["c"], [{"client_id": "c", "secret": None}]],
        [[{"client_id": "c", "secret": "s"}], [], ({"client_id": "c", "secret": "s", "name": "Staging"},)],
    ),
    "OAUTH_PKCE_ENABLED": ("django_trakt.E139", ["False", 0], [True, False]),
    "SCOPE": ("django_trakt.E140", ["public", [1]], [[], ["public"]]),
    "AUTH_PARAMS": ("django_trakt.E141", [[("prompt", "login")], {"prompt": 1}], [{}, {"prompt": "login"}]),
    "VERIFIED_EMAIL": ("django_trakt.E142", ["yes", ["example.com", 1]], [True, False, ["example.com"]]),
    "EMAIL_AUTHENTICATION": ("django_trakt.E143", ["yes", 1], [True, False]),
    "provider_class": ("django_trakt.E144", [5, TraktProvider], ["django_trakt.provider.TraktProvider"]),
}

NEW_IDS = {
    *(check_id for check_id, *_ in NUMBERS.values()),
    *(check_id for check_id, *_ in OTHERS.values()),
    *(check_id for check_id, *_ in KEYS.values()),
    "django_trakt.E130",
    "django_trakt.W101",
    "django_trakt.W102",
}


def _cases(table, *, wrong):
    """``(name, id, value)`` for every wrong (or right) value of every setting of ``table``."""
    cases = []
    for name, (check_id, *values) in table.items():
        if table is NUMBERS:
            values = list(_number_cases(*values))
        for value in values[0 if wrong else 1]:
            # A function's repr holds its address: its name keeps the id the same in every
            # process (pytest-xdist's workers must collect the same ids).
            shown = value.__qualname__ if callable(value) else repr(value)
            cases.append(pytest.param(name, check_id, value, id=f"{name}={shown}"))
    return cases


def ids(messages):
    return [message.id for message in messages]


def set_key(settings, key, value):
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], key: value}}


def test_every_setting_and_key_has_a_case_here_and_an_id_of_its_own():
    # A setting added to conf without a case in this file fails here, not silently.
    assert set(NUMBERS) | set(OTHERS) == set(SETTINGS)
    assert set(KEYS) == set(PROVIDER_KEYS)
    check_ids = [setting.check_id for setting in [*SETTINGS.values(), *PROVIDER_KEYS.values()]]
    assert len(check_ids) == len(set(check_ids)) == len(NEW_IDS) - 3
    assert {check_id for check_id, *_ in [*NUMBERS.values(), *OTHERS.values(), *KEYS.values()]} == set(check_ids)


# -- each setting: a wrong value is its error, a right one is silent ---------------------------------------


@pytest.mark.parametrize(("name", "check_id", "value"), [*_cases(NUMBERS, wrong=True), *_cases(OTHERS, wrong=True)])
def test_wrong_setting_is_its_error(settings, name, check_id, value):
    setattr(settings, name, value)
    messages = settings_checks.check_trakt_settings()
    assert ids(messages) == [check_id]
    (error,) = messages
    assert error.is_serious() and error.msg.startswith(name) and error.hint


@pytest.mark.parametrize(("name", "check_id", "value"), [*_cases(NUMBERS, wrong=False), *_cases(OTHERS, wrong=False)])
def test_right_setting_is_silent(settings, name, check_id, value):
    setattr(settings, name, value)
    assert settings_checks.check_trakt_settings() == []


@pytest.mark.parametrize(("key", "check_id", "value"), _cases(KEYS, wrong=True))
def test_wrong_provider_key_is_its_error(settings, key, check_id, value):
    set_key(settings, key, value)
    messages = settings_checks.check_provider_settings()
    assert ids(messages) == [check_id]
    (error,) = messages
    assert error.is_serious() and error.msg.startswith(f'{PROVIDER}["{key}"] must be') and error.hint


@pytest.mark.parametrize(("key", "check_id", "value"), _cases(KEYS, wrong=False))
def test_right_provider_key_is_silent(settings, key, check_id, value):
    set_key(settings, key, value)
    assert settings_checks.check_provider_settings() == []
    assert settings_checks.check_unknown_settings() == []


def test_unset_means_default_and_is_silent(settings):
    for name in SETTINGS:
        setattr(settings, name, None)
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": dict.fromkeys(PROVIDER_KEYS)}
    assert settings_checks.check_trakt_settings() == []
    assert settings_checks.check_provider_settings() == []


@pytest.mark.parametrize("providers", [[("trakt", {})], {"trakt": "https://auth.trakt.tv"}, {"trakt": [("APP", {})]}])
def test_provider_settings_not_a_dict_is_e130(settings, providers):
    settings.SOCIALACCOUNT_PROVIDERS = providers
    messages = settings_checks.check_provider_settings()
    assert ids(messages) == ["django_trakt.E130"]
    assert "must be a dict" in messages[0].msg
    assert settings_checks.check_unknown_settings() == []
    # The defaults stand in at run time.
    assert trakt_settings.AUTH_URL == "https://auth.trakt.tv"
    assert trakt_settings.TIMEOUT == 10.0


def test_no_provider_settings_at_all_is_silent(settings):
    del settings.SOCIALACCOUNT_PROVIDERS
    assert settings_checks.check_provider_settings() == []
    settings.SOCIALACCOUNT_PROVIDERS = {"google": {"SCOPE": "not ours"}}
    assert settings_checks.check_provider_settings() == []
    assert settings_checks.check_unknown_settings() == []


# -- what the messages say ----------------------------------------------------------------------------------


def test_message_names_the_type_found_and_expected_and_the_hint_what_runs_meanwhile(settings):
    settings.TRAKT_PAGE_TIMEOUT = "-1"
    (error,) = settings_checks.check_trakt_settings()
    assert error.msg == "TRAKT_PAGE_TIMEOUT must be a number (int or float), 0.1 or more; it is '-1' (str)."
    assert "TRAKT_PAGE_TIMEOUT = 3.0" in error.hint
    assert "convert them with int() or float()" in error.hint
    # The hint's "meanwhile" is what the site really runs with.
    assert "Meanwhile django-trakt uses 0.1." in error.hint
    assert trakt_settings.PAGE_TIMEOUT == 0.1


def test_integer_setting_message(settings):
    settings.TRAKT_WATCHLIST_MAX_ITEMS = 2.5
    (error,) = settings_checks.check_trakt_settings()
    assert error.msg == "TRAKT_WATCHLIST_MAX_ITEMS must be an integer, 1 or more; it is 2.5 (float)."
    assert "Meanwhile django-trakt uses 2." in error.hint


def test_timeout_message_and_default_meanwhile(settings):
    set_key(settings, "TIMEOUT", -3)
    (error,) = settings_checks.check_provider_settings()
    assert error.msg == f'{PROVIDER}["TIMEOUT"] must be a number (int or float), greater than 0; it is -3 (int).'
    assert "Meanwhile django-trakt uses 10.0." in error.hint


def test_unknown_alias_names_the_known_ones(settings):
    settings.TRAKT_CACHE = "watchlists"
    (error,) = settings_checks.check_trakt_settings()
    assert error.id == "django_trakt.E102"
    assert error.msg == "TRAKT_CACHE = 'watchlists' names no entry of CACHES (it has: 'default')."
    assert "Add 'watchlists' to CACHES" in error.hint


def test_secrets_are_never_shown(settings):
    settings.TRAKT_TOKEN_KEYS = {GOOD_KEY}
    set_key(settings, "APP", {"client_id": 12345, "secret": "very-secret-value"})
    messages = settings_checks.check_trakt_settings() + settings_checks.check_provider_settings()
    assert ids(messages) == ["django_trakt.E101", "django_trakt.E137"]
    text = " ".join(f"{message.msg} {message.hint}" for message in messages)
    assert GOOD_KEY not in text and "very-secret-value" not in text and "12345" not in text
    # What is wrong is still said: the types.
    assert "it is a set of str." in messages[0].msg
    assert "it is a dict (client_id: int, secret: str)." in messages[1].msg


def test_token_keys_as_dict_keys_are_not_shown(settings):
    settings.TRAKT_TOKEN_KEYS = {GOOD_KEY: "primary"}
    (error,) = settings_checks.check_trakt_settings()
    assert error.id == "django_trakt.E101"
    assert GOOD_KEY not in error.msg + error.hint
    assert "it is a dict (1 other key)." in error.msg


def test_long_values_are_cut_short(settings):
    settings.TRAKT_IMAGE_PREFIX = [f"folder-{number}" for number in range(100)]
    (error,) = settings_checks.check_trakt_settings()
    assert error.msg.endswith("... (list).") and "folder-99" not in error.msg


# -- settings nobody reads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("TRAKT_TOKEN_KEY", "TRAKT_TOKEN_KEYS"),
        ("TRAKT_CACHES", "TRAKT_CACHE"),
        ("TRAKT_PAGE_TIMOUT", "TRAKT_PAGE_TIMEOUT"),
        ("TRAKT_IMAGE_HOST", "TRAKT_IMAGE_HOSTS"),
        ("TRAKT_TIMEOUT", f'{PROVIDER}["TIMEOUT"]'),
        ("TRAKT_API_URL", f'{PROVIDER}["API_URL"]'),
    ],
)
def test_mistyped_setting_is_w102_with_did_you_mean(settings, name, suggestion):
    setattr(settings, name, 1)
    messages = settings_checks.check_unknown_settings()
    assert ids(messages) == ["django_trakt.W102"]
    assert (
        messages[0].msg == f"{name} is not a setting of django-trakt, so it has no effect: did you mean {suggestion}?"
    )
    assert suggestion in messages[0].hint


@pytest.mark.parametrize("name", ["TRAKT_CLIENT_ID", "TRAKT_CLIENT_SECRET", "TRAKT_ENABLED", "TRAKTOR_CACHE"])
def test_site_own_trakt_names_are_left_alone(settings, name):
    setattr(settings, name, "anything")
    assert settings_checks.check_unknown_settings() == []


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("timout", 'Did you mean "TIMEOUT"?'),
        ("REDIRECT_URL", 'Did you mean "REDIRECT_URI"?'),
        ("pkce_enabled", 'Did you mean "OAUTH_PKCE_ENABLED"?'),
        ("PAGE_TIMEOUT", "Did you mean the setting TRAKT_PAGE_TIMEOUT?"),
        ("secret", 'The app\'s credentials go inside "APP"'),
        ("HEADERS", None),
        ("OAUTH_PKCE", None),
    ],
)
def test_unknown_provider_key_is_w101(settings, key, hint):
    set_key(settings, key, 1)
    messages = settings_checks.check_unknown_settings()
    assert ids(messages) == ["django_trakt.W101"]
    assert messages[0].msg == (
        f"{PROVIDER} has the key {key!r}, which neither django-trakt nor allauth reads: it has no effect."
    )
    if hint:
        assert messages[0].hint.startswith(hint)
    else:
        assert messages[0].hint.startswith("Remove it. The keys read are: AUTH_URL, API_URL,")


# -- registered, and silent on the test suite's own configuration ----------------------------------------


def test_each_check_is_registered():
    registered = registry.get_checks()
    plain = registry.get_checks(include_deployment_checks=False)
    for check in (
        settings_checks.check_trakt_settings,
        settings_checks.check_provider_settings,
        settings_checks.check_unknown_settings,
    ):
        # Plain checks: a wrong type is an error with or without --deploy, DEBUG or not.
        assert check in registered and check in plain


def test_default_configuration_has_none_of_the_new_ids():
    for deploy in (False, True):
        assert NEW_IDS.isdisjoint(ids(run_checks(include_deployment_checks=deploy)))


def _run_check_cases():
    cases = [pytest.param(name, check_id, "5", id=name) for name, (check_id, *_) in NUMBERS.items()]
    cases += [pytest.param(name, spec[0], spec[1][0], id=name) for name, spec in OTHERS.items()]
    cases += [pytest.param(f"provider:{key}", spec[0], spec[1][0], id=key) for key, spec in KEYS.items()]
    cases += [
        pytest.param("SOCIALACCOUNT_PROVIDERS", "django_trakt.E130", {"trakt": "oops"}, id="E130"),
        pytest.param("provider:AUTHURL", "django_trakt.W101", "https://auth.trakt.tv", id="W101"),
        pytest.param("TRAKT_WATCHLIST_TTLS", "django_trakt.W102", 60, id="W102"),
    ]
    return cases


@pytest.mark.parametrize(("name", "check_id", "value"), _run_check_cases())
def test_manage_py_check_reports_each_id(settings, name, check_id, value):
    # Through Django's registry, as `manage.py check` runs them.
    if name.startswith("provider:"):
        set_key(settings, name.removeprefix("provider:"), value)
    else:
        setattr(settings, name, value)
    found = [message for message in run_checks() if message.id in NEW_IDS]
    assert ids(found) == [check_id]


# -- at run time a wrong value never breaks a page ------------------------------------------------------------


def test_wrong_numbers_run_with_the_default_or_the_minimum(settings):
    settings.TRAKT_IMAGE_MAX_BYTES = float("inf")  # int(inf) used to raise OverflowError on every image
    settings.TRAKT_WATCHLIST_TTL = float("nan")
    settings.TRAKT_DEVICE_START_LIMIT = True
    settings.TRAKT_PENDING_SIGNUP_MAX_AGE = 5
    assert trakt_settings.IMAGE_MAX_BYTES == 2 * 1024 * 1024
    assert trakt_settings.WATCHLIST_TTL == 300.0
    assert trakt_settings.DEVICE_START_LIMIT == 5
    assert trakt_settings.PENDING_SIGNUP_MAX_AGE == 60.0
    assert all(math.isfinite(getattr(trakt_settings, name.removeprefix("TRAKT_"))) for name in NUMBERS)


@pytest.mark.parametrize("value", [-1, 0, "soon", [10], float("nan")])
def test_wrong_timeout_runs_with_the_default(settings, value):
    # A negative timeout used to reach requests, which refuses it on every call to Trakt.
    set_key(settings, "TIMEOUT", value)
    assert trakt_settings.TIMEOUT == 10.0


def test_right_values_are_read_unchanged(settings):
    settings.TRAKT_WATCHLIST_TTL = 0
    settings.TRAKT_WATCHLIST_MAX_ITEMS = 250
    settings.TRAKT_IMAGE_TIMEOUT = 0.1
    settings.TRAKT_IMAGE_HOSTS = ["Media.Example.com", " "]
    set_key(settings, "TIMEOUT", 0.2)
    set_key(settings, "USER_AGENT", " mysite/2.1 ")
    set_key(settings, "API_URL", "http://127.0.0.1:8765/")
    assert trakt_settings.WATCHLIST_TTL == 0.0
    assert trakt_settings.WATCHLIST_MAX_ITEMS == 250
    assert trakt_settings.IMAGE_TIMEOUT == 0.1
    assert trakt_settings.IMAGE_HOSTS == ["media.example.com"]
    assert trakt_settings.TIMEOUT == 0.2
    agent = trakt_settings.USER_AGENT
    assert agent == f"mysite/2.1 {LIBRARY_USER_AGENT}"
    assert trakt_settings.API_URL == "http://127.0.0.1:8765"


def test_wrong_strings_run_with_the_default(settings):
    settings.TRAKT_IMAGE_HOSTS = 5  # used to raise TypeError on every image
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_settings_checks.no_such_resolver"  # used to raise ImportError
    settings.TRAKT_IMAGE_PREFIX = ["cached"]
    settings.TRAKT_CACHE = 5
    set_key(settings, "USER_AGENT", "mysite\r\nX-Injected: 1")
    set_key(settings, "AUTH_URL", 5)
    set_key(settings, "REDIRECT_URI", b"https://example.com/callback/")
    assert trakt_settings.IMAGE_HOSTS == [
        "walter.trakt.tv",
        "walter-r2.trakt.tv",
        "media.trakt.tv",
        "secure.gravatar.com",
    ]
    assert trakt_settings.IMAGE_RESOLVER is None  # DNS, which the fetch's address rules guard
    assert trakt_settings.IMAGE_PREFIX == "django_trakt"
    assert trakt_settings.CACHE == "default"
    assert trakt_settings.USER_AGENT == LIBRARY_USER_AGENT
    assert trakt_settings.AUTH_URL == "https://auth.trakt.tv"
    assert trakt_settings.REDIRECT_URI == ""


def test_resolver_path_that_imports_is_used(settings):
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_settings_checks.fake_dns"
    assert trakt_settings.IMAGE_RESOLVER is fake_dns


def test_token_keys_that_are_no_list_fail_closed(settings):
    # Never the keys derived from SECRET_KEY instead: new tokens would be encrypted with a
    # key the site did not choose, and unreadable once the setting is fixed.
    settings.TRAKT_TOKEN_KEYS = 12345
    with pytest.raises(TraktConfigurationError, match=r"TRAKT_TOKEN_KEYS\[0\] is malformed"):
        crypto.configured_keys()
    assert not crypto.uses_derived_keys()
