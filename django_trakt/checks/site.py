"""Checks of the site's setup: the Trakt app's credentials (E002, W005), the callback's scheme
(W004), and what a refresh outside a request builds its redirect URI from (W006, E003, W007)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_trakt.conf import trakt_settings

# -- the site's setup: the callback's scheme, the Trakt app's credentials, the secret, the Site --
# W004, W005 and half of E002 are deployment checks (``manage.py check --deploy``), quiet
# while DEBUG is on. What leaves the site unable to work at all (E002's missing app,
# E003, and W007) runs in a plain check. The checks that read the database do so only
# when given it (``--database default``, and ``migrate`` gives its own), and stay quiet
# while its tables do not exist yet, so they never crash ``migrate``. They are also
# tagged ``database``: Django 6.1 passes every alias to checks run without ``--database``,
# and skips database-tagged checks there instead. Imports are local: these need allauth's
# models and the URLconf, which are loaded by the time checks run.

SETTINGS_APP_HINT = (
    "Keep the credentials in the environment (export TRAKT_CLIENT_ID and TRAKT_CLIENT_SECRET before "
    'manage.py): SOCIALACCOUNT_PROVIDERS = {"trakt": {"APP": {"client_id": os.environ.get("TRAKT_CLIENT_ID", ""), '
    '"secret": os.environ.get("TRAKT_CLIENT_SECRET", "")}}}.'
)
REGISTER_HINT = (
    "Register an app at https://developer.trakt.tv (Trakt's app management) with the redirect URI printed by "
    "manage.py trakt_redirect_uri. "
)


def _trakt_app_rows(databases: Any, *, with_client_id: bool = False) -> list[tuple[Any, str]] | None:
    """``(pk, name)`` of the Trakt ``SocialApp`` rows that hold a secret (and a client id).

    ``None`` when the check may not read that database (``databases`` is how Django
    says which ones it may: ``migrate``, ``check --database``) or cannot (not migrated
    yet): a check must never crash ``migrate``.
    """
    from allauth.socialaccount.models import SocialApp
    from django.db import DatabaseError, router, transaction
    from django.db.models import Q

    from django_trakt.conf import PROVIDER_ID

    alias = router.db_for_read(SocialApp)
    if not databases or alias not in databases:
        return None
    rows = (
        SocialApp.objects.using(alias).filter(Q(provider=PROVIDER_ID) | Q(provider_id=PROVIDER_ID)).exclude(secret="")
    )
    if with_client_id:
        rows = rows.exclude(client_id="")
    try:
        # In a savepoint, so a missing table cannot break an enclosing transaction.
        with transaction.atomic(using=alias):
            return list(rows.order_by("pk").values_list("pk", "name"))
    except DatabaseError:
        return None


@checks.register(checks.Tags.security, deploy=True)
def check_callback_https(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W004: in production, the callback sent to Trakt is ``http://`` for a plain-HTTP request."""
    from urllib.parse import urlsplit

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.urls import NoReverseMatch

    from django_trakt.internal.links.redirect_uri import trakt_callback_url_for_host

    if settings.DEBUG:
        return []
    if settings.SECURE_SSL_REDIRECT and "django.middleware.security.SecurityMiddleware" in settings.MIDDLEWARE:
        return []  # a plain-HTTP request is redirected to HTTPS before it can start a login
    try:
        # What allauth sends when the request reached Django over plain HTTP; the
        # host plays no part in the scheme.
        url = trakt_callback_url_for_host("site.invalid", secure=False, validate_host=False)
    except (NoReverseMatch, ImproperlyConfigured):
        return []  # allauth's URLs are not installed: nothing is sent to Trakt
    if not url.startswith("http://"):
        return []
    return [
        checks.Warning(
            f"The callback URL sent to Trakt ({urlsplit(url).path}) is http:// whenever a request reaches "
            "Django over plain HTTP, as behind a proxy that terminates TLS: Trakt asks for HTTPS, and an "
            "https:// redirect URI registered with Trakt would not match.",
            hint='Set ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" (allauth then always sends https); behind a proxy '
            'also SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https"). Register the URL printed by '
            "manage.py trakt_redirect_uri --https.",
            id="django_trakt.W004",
        )
    ]


def _settings_app_problems() -> tuple[list[checks.CheckMessage], bool]:
    """E002 for each incomplete app in the settings, and whether the settings configure any app."""
    provider = trakt_settings.provider_settings
    # allauth reads "APPS" when present, else "APP".
    key = "APPS" if provider.get("APPS") is not None else "APP"
    configs = provider.get(key)
    configs = [] if configs is None else (list(configs) if key == "APPS" else [configs])
    problems: list[checks.CheckMessage] = []
    for position, config in enumerate(configs):
        where = f'SOCIALACCOUNT_PROVIDERS["trakt"]["{key}"]' + (f"[{position}]" if key == "APPS" else "")
        missing = [name for name in ("client_id", "secret") if not isinstance(config, dict) or not config.get(name)]
        if missing:
            problems.append(
                checks.Error(
                    f"{where} has no {' and no '.join(missing)}: signing in with Trakt fails.",
                    hint=REGISTER_HINT + SETTINGS_APP_HINT,
                    id="django_trakt.E002",
                )
            )
    return problems, bool(configs)


def _no_app_anywhere(databases: Any) -> list[checks.CheckMessage]:
    """E002 when neither the settings nor a readable database hold a Trakt app.

    In development (DEBUG) also when the settings' app has an empty client id or secret:
    settings that read the environment with ``os.environ.get`` (the README's) get empty
    strings in a shell without the exports, and every sign-in would fail.
    """
    from django.conf import settings

    problems, configured = _settings_app_problems()
    if configured:
        return problems if settings.DEBUG and databases else []
    rows = _trakt_app_rows(databases, with_client_id=True)
    if rows is None or rows:
        return []  # the database may not or cannot be read, or holds the app
    return [
        checks.Error(
            'No client id and secret are configured for Trakt (neither in SOCIALACCOUNT_PROVIDERS["trakt"] '
            "nor in a SocialApp): every page showing the Trakt sign-in link fails (SocialApp.DoesNotExist), "
            "and signing in with Trakt and linking by code fail.",
            hint=REGISTER_HINT + SETTINGS_APP_HINT + " Or add the app in the admin (Social applications).",
            id="django_trakt.E002",
        )
    ]


# E002 has two halves, registered apart. The app missing everywhere breaks every page
# that shows the sign-in link, in development too: a plain check reports it (not
# silenced by DEBUG) as soon as it may read the database, so ``migrate`` and
# ``check --database default`` catch it; with DEBUG on it also reports an incomplete app
# in the settings (the environment variables not exported). With DEBUG off an incomplete
# app in the settings stays a deployment check: a build step (collectstatic) often runs
# without the secrets.


@checks.register(checks.Tags.database)
def check_trakt_app_configured(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E002: no Trakt app at all, neither in the settings nor in the database."""
    return _no_app_anywhere(databases)


@checks.register(deploy=True)
def check_trakt_app_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002: in production, an app in the settings lacks its client id or secret."""
    from django.conf import settings

    return [] if settings.DEBUG else _settings_app_problems()[0]


def check_trakt_app_credentials(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Both halves of E002 (what ``check --deploy --database default`` reports), for direct calls."""
    return check_trakt_app_settings(app_configs) + _no_app_anywhere(databases)


@checks.register(checks.Tags.security, checks.Tags.database, deploy=True)
def check_secret_in_database(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W005: in production, the Trakt client secret is stored in a ``SocialApp`` row."""
    from django.conf import settings

    if settings.DEBUG:
        return []
    rows = _trakt_app_rows(databases)
    if not rows:
        return []
    names = ", ".join(repr(name) if name else f"#{pk}" for pk, name in rows)
    return [
        checks.Warning(
            f"The Trakt client secret is stored in the database (SocialApp {names}): whoever can read the "
            "database, one of its backups or that admin page can read the secret.",
            hint=SETTINGS_APP_HINT + " Then delete the SocialApp row: allauth refuses to choose between an app "
            "in the settings and one in the database.",
            id="django_trakt.W005",
        )
    ]


REFRESH_URI_HINT = (
    'Or set SOCIALACCOUNT_PROVIDERS["trakt"]["REDIRECT_URI"] to the redirect URI registered with the Trakt app '
    "(manage.py trakt_redirect_uri prints it)."
)


@checks.register()
def check_refresh_redirect_uri(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W006: a refresh outside a request (the scheduled command) cannot build its redirect URI."""
    from django.apps import apps
    from django.conf import settings

    if trakt_settings.REDIRECT_URI:
        return []
    if not apps.is_installed("django.contrib.sites"):
        problem = "django.contrib.sites is not installed"
        fix = "Add django.contrib.sites to INSTALLED_APPS with SITE_ID = 1 and set that Site's domain."
    elif getattr(settings, "SITE_ID", None) is None:
        problem = "SITE_ID is not set"
        fix = "Set SITE_ID (usually 1) and that Site's domain to this site's host."
    else:
        return []
    return [
        checks.Warning(
            f"{problem}, so refreshing Trakt tokens outside a request (manage.py refresh_trakt_tokens, "
            "a task, the admin's Refresh now) cannot build the redirect URI Trakt's refresh needs: "
            "every scheduled refresh would stop (no link is flagged for it).",
            hint=f"{fix} {REFRESH_URI_HINT}",
            id="django_trakt.W006",
        )
    ]


# E003 / W007 run in a plain check, like E002's missing app: only when given the database
# (``migrate``, ``check --database default``), and quiet before the tables exist.


@checks.register(checks.Tags.database)
def check_refresh_site_domain(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E003: the Site of SITE_ID does not exist; W007: it is still a placeholder (the refresh's redirect URI)."""
    from django.apps import apps
    from django.conf import settings
    from django.db import DatabaseError, router, transaction

    if not apps.is_installed("django.contrib.sites"):
        return []
    if getattr(settings, "SITE_ID", None) is None:
        return []  # W006 (and get_current_site then goes by the request's host)
    from django.contrib.sites.models import Site

    from django_trakt.internal.links.redirect_uri import PLACEHOLDER_DOMAIN

    alias = router.db_for_read(Site)
    if not databases or alias not in databases:
        return []
    try:
        with transaction.atomic(using=alias):
            domain = Site.objects.using(alias).filter(pk=settings.SITE_ID).values_list("domain", flat=True).first()
    except DatabaseError:
        return []  # not migrated yet: a check must never crash migrate
    if domain is None:
        # Not only the refresh: get_current_site() raises on every request, and allauth
        # calls it for the sign-in link, so REDIRECT_URI does not help here.
        return [
            checks.Error(
                f"The Site of SITE_ID = {settings.SITE_ID!r} does not exist: every page that looks up the current "
                "site (allauth's sign-in and signup, the Trakt sign-in link) fails with Site.DoesNotExist, and "
                "scheduled refreshes cannot build their redirect URI.",
                hint="Create that Site in the admin (Sites) with this site's host as its domain, or set SITE_ID "
                "to the id of an existing one.",
                id="django_trakt.E003",
            )
        ]
    if trakt_settings.REDIRECT_URI:
        return []  # the refresh sends that instead of the Site's domain
    host = domain.strip().split(":")[0].lower()
    if host and host not in (PLACEHOLDER_DOMAIN, f"www.{PLACEHOLDER_DOMAIN}"):
        return []
    return [
        checks.Warning(
            f"The Site of SITE_ID has the domain {domain.strip() or 'empty'!r}: refreshing Trakt tokens outside "
            "a request builds its redirect URI from it, and every scheduled refresh would stop until it names "
            "this site's host.",
            hint=f"Set the Site's domain in the admin (Sites) to the host registered with Trakt. {REFRESH_URI_HINT}",
            id="django_trakt.W007",
        )
    ]
