"""Settings of the example site.

By default it runs against the local Trakt of ``django_trakt.testing`` (started by
``run.py``) so that nobody needs a Trakt account or internet. Set
``TRAKT_CLIENT_ID`` and ``TRAKT_CLIENT_SECRET`` (and, for staging, ``TRAKT_AUTH_URL``,
``TRAKT_API_URL``, ``TRAKT_WEB_URL``) to use a real Trakt app instead.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_trakt",  # before allauth, as the README installs it
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.headless",  # the app's side of sign-in by code: /tv/ (docs/headless.md)
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost after security: it sees the final answer (APPEND_SLASH's redirect included).
    "example.middleware.NotFoundPageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "example.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Listed first so that the example's allauth/layouts/base.html wins over allauth's own.
        "DIRS": [BASE_DIR / "example" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "example.wsgi.application"

# SQLite by default; DATABASE_URL=postgres://... for PostgreSQL.
DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_REDIRECT_URL = "profile"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"

# What the README recommends for Trakt: it gives no email address, so the social
# signup form asks for one (and offers the Trakt username as username).
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "optional"
# Tells django-trakt which address confirmations come from the confirmation mail (E006).
ACCOUNT_ADAPTER = "django_trakt.account_adapter.TraktAccountAdapter"
SOCIALACCOUNT_STORE_TOKENS = False

# --- Trakt -------------------------------------------------------------------------
LOCAL_TRAKT_URL = os.environ.get("LOCAL_TRAKT_URL", "http://127.0.0.1:8765")
LOCAL_CLIENT_ID = "example-local-client-id"
LOCAL_CLIENT_SECRET = "example-local-client-secret"  # noqa: S105 (the local Trakt's demo app)

USES_REAL_TRAKT = bool(os.environ.get("TRAKT_CLIENT_ID"))
TRAKT_CLIENT_ID = os.environ.get("TRAKT_CLIENT_ID", LOCAL_CLIENT_ID)
TRAKT_CLIENT_SECRET = os.environ.get("TRAKT_CLIENT_SECRET", LOCAL_CLIENT_SECRET)


def _host(name: str, real_default: str) -> str:
    return os.environ.get(name) or (real_default if USES_REAL_TRAKT else LOCAL_TRAKT_URL)


SOCIALACCOUNT_PROVIDERS = {
    "trakt": {
        "APP": {"client_id": TRAKT_CLIENT_ID, "secret": TRAKT_CLIENT_SECRET},
        "AUTH_URL": _host("TRAKT_AUTH_URL", "https://auth.trakt.tv"),
        "API_URL": _host("TRAKT_API_URL", "https://api.trakt.tv"),
        "WEB_URL": _host("TRAKT_WEB_URL", "https://trakt.tv"),
        "USER_AGENT": "django-trakt-example/1.0",
        # The example runs without django.contrib.sites: refreshes outside a request
        # (manage.py refresh_trakt_tokens) send this registered redirect URI instead.
        "REDIRECT_URI": "http://{}/accounts/trakt/login/callback/".format(
            os.environ.get("EXAMPLE_SITE_ADDR", "127.0.0.1:8000")
        ),
    }
}

# A dedicated key in production (see README "Security"); the example derives one
# from SECRET_KEY unless TRAKT_TOKEN_KEYS is given as a comma-separated list.
if os.environ.get("TRAKT_TOKEN_KEYS"):
    TRAKT_TOKEN_KEYS = os.environ["TRAKT_TOKEN_KEYS"].split(",")
else:
    SILENCED_SYSTEM_CHECKS = ["django_trakt.W001"]

# Trakt forbids hotlinking its images: avatars and posters are fetched once and kept in
# the default storage (a local folder here; S3 or any storage backend works unchanged).
# The local Trakt serves its images over plain http on loopback, which the guarded fetch
# refuses; this development-only setting trusts that one origin while DEBUG is on
# (`check --deploy` refuses it: django_trakt.E005). Against the real Trakt it is unset.
MEDIA_ROOT = BASE_DIR / "media"
if not USES_REAL_TRAKT:
    TRAKT_DEVELOPMENT_IMAGE_ORIGINS = [LOCAL_TRAKT_URL]
TRAKT_WATCHLIST_TTL = 300

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_trakt": {"handlers": ["console"], "level": "INFO"}},
}
