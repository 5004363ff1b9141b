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
