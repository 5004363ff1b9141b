"""Settings for the test suite: SQLite by default, PostgreSQL with DATABASE_URL."""

import os

import dj_database_url

SECRET_KEY = "django-trakt-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.sites",
    # Before allauth, as the README installs it: its confirmation mail names the Trakt account.
    "django_trakt",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
]
SITE_ID = 1

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
DATABASES = {"default": dj_database_url.config(default="sqlite://:memory:", conn_max_age=0)}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STATIC_URL = "/static/"

# The settings the README recommends for Trakt (it gives no email address).
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "optional"
# Tells django-trakt which address confirmations come from the confirmation mail (E006).
ACCOUNT_ADAPTER = "django_trakt.account_adapter.TraktAccountAdapter"
SOCIALACCOUNT_STORE_TOKENS = False
# A page that exists (Django's default "/accounts/profile/" is none: django_trakt.W010).
LOGIN_REDIRECT_URL = "/accounts/email/"

TRAKT_CLIENT_ID = "test-client-id"
TRAKT_CLIENT_SECRET = "test-client-secret"
# Fixed test keys (Fernet.generate_key() output); never use these anywhere else.
TRAKT_TOKEN_KEYS = ["SmUfeQ2TCpyiwLIkUdEVdg0mC_L5KrdCR_kg3ipfm2E="]

# In-process tests answer these hosts with the local Trakt (tests/conftest.py); the
# multi-process tests start it as a loopback server and pass its URL to the processes.
_LOCAL_TRAKT_URL = os.environ.get("TRAKT_TEST_SERVER_URL")
SOCIALACCOUNT_PROVIDERS = {
    "trakt": {
        "APP": {"client_id": TRAKT_CLIENT_ID, "secret": TRAKT_CLIENT_SECRET},
        "AUTH_URL": _LOCAL_TRAKT_URL or "https://auth.trakt.test",
        "API_URL": _LOCAL_TRAKT_URL or "https://api.trakt.test",
        "WEB_URL": _LOCAL_TRAKT_URL or "https://trakt.test",
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "DEBUG"},
}
