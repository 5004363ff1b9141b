"""System checks: misconfiguration shows up in ``manage.py check``, not as a crash.

Ids are stable and documented in the README ("System checks").
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_trakt import crypto
from django_trakt.conf import trakt_settings

KEY_HINT = (
    'Generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())" and set TRAKT_TOKEN_KEYS = [<that key>] '
    "from the environment."
)


@checks.register(checks.Tags.security)
def check_token_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    keys = trakt_settings.TOKEN_KEYS
    if keys is None:
        return [
            checks.Warning(
                "TRAKT_TOKEN_KEYS is not set: Trakt tokens are encrypted with a key derived from SECRET_KEY.",
                hint="A dedicated key lets you rotate SECRET_KEY and the token key independently. " + KEY_HINT,
                id="django_trakt.W001",
            )
        ]
    if not keys:
        return [checks.Error("TRAKT_TOKEN_KEYS is empty.", hint=KEY_HINT, id="django_trakt.E001")]
    errors: list[checks.CheckMessage] = []
    for position, key in enumerate(keys):
        problem = crypto.key_problem(key)
        if problem:
            errors.append(
                checks.Error(
                    f"TRAKT_TOKEN_KEYS[{position}] is malformed: {problem}.", hint=KEY_HINT, id="django_trakt.E001"
                )
            )
    return errors


@checks.register(checks.Tags.security)
def check_allauth_token_copy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from allauth.socialaccount import app_settings as socialaccount_settings

    if socialaccount_settings.STORE_TOKENS:
        return [
            checks.Warning(
                "SOCIALACCOUNT_STORE_TOKENS is on: allauth keeps a second, plain-text copy of every "
                "Trakt token in its SocialToken table.",
                hint="django-trakt stores the tokens encrypted in TraktToken; set SOCIALACCOUNT_STORE_TOKENS = "
                "False unless another provider needs allauth's copy.",
                id="django_trakt.W002",
            )
        ]
    return []


@checks.register()
def check_email_on_signup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from allauth.socialaccount import app_settings as socialaccount_settings

    if not socialaccount_settings.EMAIL_REQUIRED:
        return [
            checks.Warning(
                "Trakt gives no email address and your settings do not ask for one: "
                "users who sign up with Trakt will have no email (no password reset, no notices).",
                hint='Require an email on signup: ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", ...] or '
                "SOCIALACCOUNT_EMAIL_REQUIRED = True; allauth's social signup form then asks for it.",
                id="django_trakt.W003",
            )
        ]
    return []


@checks.register(checks.Tags.security, deploy=True)
def check_email_verification(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W008: in production, the address typed at a Trakt signup is trusted without proof."""
    from allauth.account import app_settings as account_settings
    from django.conf import settings

    if settings.DEBUG or account_settings.EMAIL_VERIFICATION == account_settings.EmailVerificationMethod.MANDATORY:
        return []
    return [
        checks.Warning(
            'ACCOUNT_EMAIL_VERIFICATION is not "mandatory": Trakt gives no email address, so the one typed at '
            "a Trakt signup is unproven, and someone could pre-register another person's address with their own "
            "Trakt account (account pre-hijacking).",
            hint='Set ACCOUNT_EMAIL_VERIFICATION = "mandatory" (and an EMAIL_BACKEND that delivers); see '
            "docs/security.md.",
            id="django_trakt.W008",
        )
    ]


# -- production setup: the callback's scheme, the Trakt app's credentials, the secret ------
# Deployment checks (``manage.py check --deploy``), quiet while DEBUG is on; the two
# that read the database do so only when given it (``--database default``), so they
# never run, nor fail, inside ``migrate``. They are also tagged ``database``: Django 6.1
# passes every alias to checks run without ``--database``, and skips database-tagged
# checks there instead. Imports are local: these need allauth's
# models and the URLconf, which are loaded by the time checks run.

SETTINGS_APP_HINT = (
    'Keep the credentials in the environment: SOCIALACCOUNT_PROVIDERS = {"trakt": {"APP": {'
    '"client_id": os.environ["TRAKT_CLIENT_ID"], "secret": os.environ["TRAKT_CLIENT_SECRET"]}}}.'
)
REGISTER_HINT = (
    "Register an app at https://trakt.tv/oauth/applications with the redirect URI printed by "
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

    from django_trakt.redirect_uri import trakt_callback_url_for_host

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


@checks.register(checks.Tags.database, deploy=True)
def check_trakt_app_credentials(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E002: in production, no client id and secret for Trakt, in the settings or the database."""
    from django.conf import settings

    if settings.DEBUG:
        return []
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
    if problems or configs:
        return problems
    rows = _trakt_app_rows(databases, with_client_id=True)
    if rows is None or rows:
        return []  # the database may not or cannot be read, or holds the app
    return [
        checks.Error(
            'No client id and secret are configured for Trakt (neither in SOCIALACCOUNT_PROVIDERS["trakt"] '
            "nor in a SocialApp): signing in with Trakt and linking by code fail.",
            hint=REGISTER_HINT + SETTINGS_APP_HINT,
            id="django_trakt.E002",
        )
    ]


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


@checks.register(checks.Tags.database, deploy=True)
def check_refresh_site_domain(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W007: in production, the current Site (the refresh's redirect URI) is still a placeholder."""
    from django.apps import apps
    from django.conf import settings
    from django.db import DatabaseError, router, transaction

    if trakt_settings.REDIRECT_URI or not apps.is_installed("django.contrib.sites"):
        return []
    if getattr(settings, "SITE_ID", None) is None:
        return []  # W006
    from django.contrib.sites.models import Site

    from django_trakt.redirect_uri import PLACEHOLDER_DOMAIN

    alias = router.db_for_read(Site)
    if not databases or alias not in databases:
        return []
    try:
        with transaction.atomic(using=alias):
            domain = Site.objects.using(alias).filter(pk=settings.SITE_ID).values_list("domain", flat=True).first()
    except DatabaseError:
        return []  # not migrated yet: a check must never crash migrate
    host = (domain or "").strip().split(":")[0].lower()
    if domain is not None and host and host not in (PLACEHOLDER_DOMAIN, f"www.{PLACEHOLDER_DOMAIN}"):
        return []
    shown = "does not exist" if domain is None else f"has the domain {domain.strip() or 'empty'!r}"
    return [
        checks.Warning(
            f"The Site of SITE_ID {shown}: refreshing Trakt tokens outside a request builds its redirect URI "
            "from it, and every scheduled refresh would stop until it names this site's host.",
            hint=f"Set the Site's domain in the admin (Sites) to the host registered with Trakt. {REFRESH_URI_HINT}",
            id="django_trakt.W007",
        )
    ]
