"""The settings are checked by one id per kind of fault, the message naming the setting: a wrong
type or range (E101), a name that names nothing (E102), a name nobody reads (W101, "did you
mean"), a removed setting still set (W103). allauth's own keys are left to allauth, the checks
are registered, and a wrong value never breaks the site at run time."""

from __future__ import annotations

import math

import pytest
from django.core.checks import run_checks
from django.core.checks.registry import registry

from django_trakt import checks
from django_trakt.checks.settings import REMOVED
from django_trakt.conf import LIBRARY_USER_AGENT, SETTINGS, trakt_settings
from django_trakt.exceptions import TraktConfigurationError
from django_trakt.internal.links import crypto
from django_trakt.internal.pages import watchlist

GOOD_KEY = "SmUfeQ2TCpyiwLIkUdEVdg0mC_L5KrdCR_kg3ipfm2E="
PROVIDER = 'SOCIALACCOUNT_PROVIDERS["trakt"]'
WRONG, MISSING, UNKNOWN, REMOVED_ID = "django_trakt.E101", "django_trakt.E102", "django_trakt.W101", "django_trakt.W103"
SETTINGS_IDS = {WRONG, MISSING, UNKNOWN, REMOVED_ID}


def fake_dns(host):
    return ["93.184.216.34"]


NOT_CALLABLE = 42

# Number settings: the smallest value allowed, and whether it is excluded.
NUMBERS = {
    "WATCHLIST_TTL": (0, False),
    "PAGE_TIMEOUT": (0.1, False),
    "REFRESH_RATE": (0, False),
    "TIMEOUT": (0, True),
}


def _number_cases(minimum, exclusive):
    """Wrong: a string, a bool, no finite number, a list, below the minimum; right: from the minimum up."""
    wrong = ["5", True, float("nan"), float("inf"), [5], minimum - 1]
    right = [minimum + 0.25, minimum + 1, 3600]
    (wrong if exclusive else right).append(minimum)
    return [(WRONG, value) for value in wrong], right


# The others: (wrong values with the id each gets, right values).
OTHERS = {
    "TOKEN_KEYS": ([(WRONG, {GOOD_KEY}), (WRONG, 5), (WRONG, {"key": GOOD_KEY})], [[GOOD_KEY], (GOOD_KEY,), GOOD_KEY]),
    "CACHE": ([(WRONG, 5), (WRONG, ["default"]), (MISSING, "no-such-cache")], ["default", ""]),
    "TASK_BACKEND": ([(WRONG, 5), (WRONG, ["default"])], ["default", "trakt"]),
    "TASK_QUEUE": ([(WRONG, 5), (WRONG, ["default"])], ["default", "trakt-refresh"]),
    "IMAGE_HOSTS": (
        [(WRONG, 5), (WRONG, ["media.trakt.tv", 5]), (WRONG, {"media.trakt.tv": 1})],
        [["media.trakt.tv", ".example.com"], ("media.trakt.tv",), {"media.trakt.tv"}, "media.trakt.tv", []],
    ),
    "IMAGE_STORAGE": ([(WRONG, 5), (MISSING, "no-such-storage")], ["default", ""]),
    "IMAGE_RESOLVER": (
        [
            (WRONG, 5),
            (MISSING, "tests.test_settings_checks.no_such_resolver"),
            (MISSING, "no_dots"),
            (MISSING, "tests.test_settings_checks.NOT_CALLABLE"),
        ],
        ["tests.test_settings_checks.fake_dns", fake_dns],
    ),
    "DEVELOPMENT_IMAGE_ORIGINS": (
        [(WRONG, value) for value in ("http://127.0.0.1:8765", ["127.0.0.1:8765"], ["http://h:1/images"], ["ftp://h"])],
        [["http://127.0.0.1:8765"], ("http://localhost:8765/",), []],
    ),
    "AUTH_URL": ([(WRONG, 5), (WRONG, "auth.trakt.tv"), (WRONG, "ftp://auth.trakt.tv")], ["https://auth.trakt.tv", ""]),
    "API_URL": ([(WRONG, 5), (WRONG, "api.trakt.tv"), (WRONG, "https://")], ["http://127.0.0.1:8765", "https://a.b/"]),
    "WEB_URL": ([(WRONG, 5), (WRONG, "trakt.tv")], ["https://trakt.tv"]),
    "USER_AGENT": ([(WRONG, 5), (WRONG, "mysite/2.1\r\nX-Injected: 1")], ["mysite/2.1", ""]),
    "REDIRECT_URI": (
        [(WRONG, 5), (WRONG, b"https://example.com/callback/")],
        ["https://example.com/accounts/trakt/login/callback/", "urn:ietf:wg:oauth:2.0:oob", ""],
    ),
}


def _cases(*, wrong):
    """``(name, id, value)`` for every wrong (or right) value of every setting."""
    cases = []
    tables = {name: _number_cases(*spec) for name, spec in NUMBERS.items()} | OTHERS
    for name, (bad, good) in tables.items():
        for check_id, value in bad if wrong else [(None, value) for value in good]:
            # A function's repr holds its address: its name keeps the id the same in every
            # process (pytest-xdist's workers must collect the same ids).
            shown = value.__qualname__ if callable(value) else repr(value)
            cases.append(pytest.param(name, check_id, value, id=f"{name}={shown}"))
    return cases


def ids(messages):
    return [message.id for message in messages]


def set_key(settings, key, value):
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {**settings.SOCIALACCOUNT_PROVIDERS["trakt"], key: value}}


def write(settings, name, value):
    """Write ``value`` for the setting ``name`` where a site writes it."""
    if SETTINGS[name].provider_key:
        set_key(settings, name, value)
    else:
        setattr(settings, SETTINGS[name].where, value)


def test_every_setting_has_a_case_here():
    # A setting added to conf without a case in this file fails here, not silently.
    assert set(NUMBERS) | set(OTHERS) == set(SETTINGS)
    assert len(SETTINGS) == 17


# -- each setting: a wrong value is the error of its kind, naming the setting; a right one is silent -----------


@pytest.mark.parametrize(("name", "check_id", "value"), _cases(wrong=True))
def test_wrong_setting_is_the_error_of_its_kind_naming_it(settings, name, check_id, value):
    write(settings, name, value)
    messages = checks.check_settings()
    assert ids(messages) == [check_id]
    (error,) = messages
    assert error.is_serious() and error.msg.startswith(SETTINGS[name].where) and error.hint


@pytest.mark.parametrize(("name", "check_id", "value"), _cases(wrong=False))
def test_right_setting_is_silent(settings, name, check_id, value):
    write(settings, name, value)
    assert checks.check_settings() == []
    assert checks.check_unknown_settings() == []


def test_unset_means_default_and_is_silent(settings):
    for setting in SETTINGS.values():
        if not setting.provider_key:
            setattr(settings, setting.where, None)
    settings.SOCIALACCOUNT_PROVIDERS = {"trakt": {name: None for name, s in SETTINGS.items() if s.provider_key}}
    assert checks.check_settings() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APP", "client:secret"),
        ("APPS", {"client_id": "c"}),
        ("OAUTH_PKCE_ENABLED", "False"),
        ("SCOPE", "public"),
        ("AUTH_PARAMS", [("prompt", "login")]),
        ("VERIFIED_EMAIL", "yes"),
        ("EMAIL_AUTHENTICATION", 1),
        ("provider_class", 5),
    ],
)
def test_allauth_own_keys_are_left_to_allauth(settings, key, value):
    # Neither checked nor called unknown: their values are allauth's to read and refuse.
    set_key(settings, key, value)
    assert checks.check_settings() == [] and checks.check_unknown_settings() == []


@pytest.mark.parametrize("providers", [[("trakt", {})], {"trakt": "https://auth.trakt.tv"}, {"trakt": [("APP", {})]}])
def test_provider_settings_not_a_dict_is_e101(settings, providers):
    settings.SOCIALACCOUNT_PROVIDERS = providers
    messages = checks.check_settings()
    assert ids(messages) == [WRONG]
    assert "must be a dict" in messages[0].msg and messages[0].msg.startswith("SOCIALACCOUNT_PROVIDERS")
    assert checks.check_unknown_settings() == []
    # The defaults stand in at run time.
    assert trakt_settings.AUTH_URL == "https://auth.trakt.tv"
    assert trakt_settings.TIMEOUT == 10.0


def test_no_provider_settings_at_all_is_silent(settings):
    del settings.SOCIALACCOUNT_PROVIDERS
    assert checks.check_settings() == []
    settings.SOCIALACCOUNT_PROVIDERS = {"google": {"SCOPE": "not ours"}}
    assert checks.check_settings() == []
    assert checks.check_unknown_settings() == []


# -- what the messages say ----------------------------------------------------------------------------------


def test_message_names_the_type_found_and_expected_and_the_hint_what_runs_meanwhile(settings):
    settings.TRAKT_PAGE_TIMEOUT = "-1"
    (error,) = checks.check_settings()
    assert error.msg == "TRAKT_PAGE_TIMEOUT must be a number (int or float), 0.1 or more; it is '-1' (str)."
    assert "TRAKT_PAGE_TIMEOUT = 3.0" in error.hint
    assert "convert them with int() or float()" in error.hint
    # The hint's "meanwhile" is what the site really runs with.
    assert "Meanwhile django-trakt uses 0.1." in error.hint
    assert trakt_settings.PAGE_TIMEOUT == 0.1


def test_timeout_message_and_default_meanwhile(settings):
    set_key(settings, "TIMEOUT", -3)
    (error,) = checks.check_settings()
    assert error.msg == f'{PROVIDER}["TIMEOUT"] must be a number (int or float), greater than 0; it is -3 (int).'
    assert "Meanwhile django-trakt uses 10.0." in error.hint


def test_unknown_alias_names_the_known_ones(settings):
    settings.TRAKT_CACHE = "watchlists"
    (error,) = checks.check_settings()
    assert error.id == MISSING
    assert error.msg == "TRAKT_CACHE = 'watchlists' names no entry of CACHES (it has: 'default')."
    assert "Add 'watchlists' to CACHES" in error.hint


def test_resolver_that_does_not_import_is_e102(settings):
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_settings_checks.no_such_resolver"
    (error,) = checks.check_settings()
    assert error.msg == (
        "TRAKT_IMAGE_RESOLVER = 'tests.test_settings_checks.no_such_resolver' "
        "is no dotted path of a callable that imports."
    )


def test_secrets_are_never_shown(settings):
    settings.TRAKT_TOKEN_KEYS = {GOOD_KEY}
    (error,) = checks.check_settings()
    assert error.id == WRONG
    assert GOOD_KEY not in error.msg + error.hint
    # What is wrong is still said: the types.
    assert "it is a set of str." in error.msg


def test_token_keys_as_dict_keys_are_not_shown(settings):
    settings.TRAKT_TOKEN_KEYS = {GOOD_KEY: "primary"}
    (error,) = checks.check_settings()
    assert error.id == WRONG
    assert GOOD_KEY not in error.msg + error.hint
    assert "it is a dict (1 key)." in error.msg


def test_long_values_are_cut_short(settings):
    settings.TRAKT_TASK_QUEUE = [f"queue-{number}" for number in range(100)]
    (error,) = checks.check_settings()
    assert error.msg.endswith("... (list).") and "queue-99" not in error.msg


# -- names nobody reads ----------------------------------------------------------------------------------


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
def test_mistyped_setting_is_w101_with_did_you_mean(settings, name, suggestion):
    setattr(settings, name, 1)
    messages = checks.check_unknown_settings()
    assert ids(messages) == [UNKNOWN]
    assert (
        messages[0].msg == f"{name} is not a setting of django-trakt, so it has no effect: did you mean {suggestion}?"
    )
    assert suggestion in messages[0].hint


@pytest.mark.parametrize("name", ["TRAKT_CLIENT_ID", "TRAKT_CLIENT_SECRET", "TRAKT_ENABLED", "TRAKTOR_CACHE"])
def test_site_own_trakt_names_are_left_alone(settings, name):
    setattr(settings, name, "anything")
    assert checks.check_unknown_settings() == []


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
    messages = checks.check_unknown_settings()
    assert ids(messages) == [UNKNOWN]
    assert messages[0].msg == (
        f"{PROVIDER} has the key {key!r}, which neither django-trakt nor allauth reads: it has no effect."
    )
    if hint:
        assert messages[0].hint.startswith(hint)
    else:
        assert messages[0].hint.startswith("Remove it. The keys read are: AUTH_URL, API_URL,")


# -- removed settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_removed_setting_still_set_warns_with_its_fixed_value_and_why(settings, name):
    setattr(settings, name, 1)
    messages = checks.check_removed_settings()
    assert ids(messages) == [REMOVED_ID]
    (warning,) = messages
    assert warning.msg.startswith(f"{name} was removed in 0.2: it has no effect; its value is now fixed at ")
    removed = REMOVED[name]
    assert f"({removed.module.__name__}.{removed.constant})" in warning.msg and " because " in warning.msg
    assert warning.hint.startswith(f"Remove {name} from your settings.")
    # Not also a setting "nobody reads", and not readable through trakt_settings any more.
    assert checks.check_unknown_settings() == []
    with pytest.raises(AttributeError):
        getattr(trakt_settings, name.removeprefix("TRAKT_"))


def test_removed_setting_names_the_value_in_force(settings, monkeypatch):
    settings.TRAKT_FAILURE_BACKOFF = 5
    (warning,) = checks.check_removed_settings()
    assert "fixed at 60 seconds (django_trakt.internal.pages.watchlist.FAILURE_BACKOFF)" in warning.msg
    monkeypatch.setattr(watchlist, "FAILURE_BACKOFF", 30.0)
    assert "fixed at 30 seconds" in checks.check_removed_settings()[0].msg


def test_removed_settings_unset_or_none_are_silent(settings):
    assert checks.check_removed_settings() == []
    settings.TRAKT_IMAGE_PREFIX = None
    assert checks.check_removed_settings() == []


# -- registered, and silent on the test suite's own configuration ----------------------------------------


def test_each_check_is_registered():
    registered = registry.get_checks()
    plain = registry.get_checks(include_deployment_checks=False)
    for check in (checks.check_settings, checks.check_unknown_settings, checks.check_removed_settings):
        # Plain checks: a wrong type is an error with or without --deploy, DEBUG or not.
        assert check in registered and check in plain


def test_default_configuration_has_none_of_these_ids():
    for deploy in (False, True):
        assert SETTINGS_IDS.isdisjoint(ids(run_checks(include_deployment_checks=deploy)))


@pytest.mark.parametrize(
    ("name", "check_id", "value"),
    [
        pytest.param("TRAKT_WATCHLIST_TTL", WRONG, "5", id="E101"),
        pytest.param("provider:TIMEOUT", WRONG, "5", id="E101-provider-key"),
        pytest.param("SOCIALACCOUNT_PROVIDERS", WRONG, {"trakt": "oops"}, id="E101-provider"),
        pytest.param("TRAKT_IMAGE_STORAGE", MISSING, "nowhere", id="E102"),
        pytest.param("provider:AUTHURL", UNKNOWN, "https://auth.trakt.tv", id="W101-provider-key"),
        pytest.param("TRAKT_WATCHLIST_TTLS", UNKNOWN, 60, id="W101"),
        pytest.param("TRAKT_TASK_RETRIES", REMOVED_ID, 5, id="W103"),
    ],
)
def test_manage_py_check_reports_each_id(settings, name, check_id, value):
    # Through Django's registry, as `manage.py check` runs them.
    if name.startswith("provider:"):
        set_key(settings, name.removeprefix("provider:"), value)
    else:
        setattr(settings, name, value)
    found = [message for message in run_checks() if message.id in SETTINGS_IDS]
    assert ids(found) == [check_id]


# -- at run time a wrong value never breaks a page ------------------------------------------------------------


def test_wrong_numbers_run_with_the_default_or_the_minimum(settings):
    settings.TRAKT_WATCHLIST_TTL = float("nan")
    settings.TRAKT_REFRESH_RATE = True
    settings.TRAKT_PAGE_TIMEOUT = 0.01
    assert trakt_settings.WATCHLIST_TTL == 300.0
    assert trakt_settings.REFRESH_RATE == 20.0
    assert trakt_settings.PAGE_TIMEOUT == 0.1
    assert all(math.isfinite(getattr(trakt_settings, name)) for name in NUMBERS)


@pytest.mark.parametrize("value", [-1, 0, "soon", [10], float("nan")])
def test_wrong_timeout_runs_with_the_default(settings, value):
    # A negative timeout used to reach requests, which refuses it on every call to Trakt.
    set_key(settings, "TIMEOUT", value)
    assert trakt_settings.TIMEOUT == 10.0


def test_right_values_are_read_unchanged(settings):
    settings.TRAKT_WATCHLIST_TTL = 0
    settings.TRAKT_PAGE_TIMEOUT = 0.1
    settings.TRAKT_IMAGE_HOSTS = ["Media.Example.com", " "]
    set_key(settings, "TIMEOUT", 0.2)
    set_key(settings, "USER_AGENT", " mysite/2.1 ")
    set_key(settings, "API_URL", "http://127.0.0.1:8765/")
    assert trakt_settings.WATCHLIST_TTL == 0.0
    assert trakt_settings.PAGE_TIMEOUT == 0.1
    assert trakt_settings.IMAGE_HOSTS == ["media.example.com"]
    assert trakt_settings.TIMEOUT == 0.2
    assert f"mysite/2.1 {LIBRARY_USER_AGENT}" == trakt_settings.USER_AGENT
    assert trakt_settings.API_URL == "http://127.0.0.1:8765"


def test_wrong_strings_run_with_the_default(settings):
    settings.TRAKT_IMAGE_HOSTS = 5  # used to raise TypeError on every image
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_settings_checks.no_such_resolver"  # used to raise ImportError
    settings.TRAKT_TASK_QUEUE = ["trakt"]
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
    assert trakt_settings.TASK_QUEUE == "default"
    assert trakt_settings.CACHE == "default"
    assert trakt_settings.USER_AGENT == LIBRARY_USER_AGENT
    assert trakt_settings.AUTH_URL == "https://auth.trakt.tv"
    assert trakt_settings.REDIRECT_URI == ""


def test_resolver_path_that_imports_is_used(settings):
    settings.TRAKT_IMAGE_RESOLVER = "tests.test_settings_checks.fake_dns"
    assert trakt_settings.IMAGE_RESOLVER is fake_dns


def test_an_unknown_name_is_no_setting():
    with pytest.raises(AttributeError, match="django-trakt has no setting 'CACHES'"):
        trakt_settings.CACHES  # noqa: B018


def test_token_keys_that_are_no_list_fail_closed(settings):
    # Never the keys derived from SECRET_KEY instead: new tokens would be encrypted with a
    # key the site did not choose, and unreadable once the setting is fixed.
    settings.TRAKT_TOKEN_KEYS = 12345
    with pytest.raises(TraktConfigurationError, match=r"TRAKT_TOKEN_KEYS\[0\] is malformed"):
        crypto.configured_keys()
    assert not crypto.uses_derived_keys()
