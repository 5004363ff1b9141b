"""Checks of what keeps tokens secret: the token keys (E001, W001), allauth's plain copy (W002), and
the development image origins in a deployment (E005)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_trakt.conf import trakt_settings
from django_trakt.internal.links import crypto

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


@checks.register(checks.Tags.security, deploy=True)
def check_development_image_origins(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E005: a deployment names development image origins (plain http, loopback allowed)."""
    from django.conf import settings

    if not getattr(settings, "TRAKT_DEVELOPMENT_IMAGE_ORIGINS", None):
        return []
    return [
        checks.Error(
            "TRAKT_DEVELOPMENT_IMAGE_ORIGINS is set: with DEBUG on, the image fetch would reach those origins "
            "over plain http and on loopback or private addresses, which it refuses for every other host.",
            hint="It is for developing against the local Trakt (docs/local-trakt.md). Leave it out of "
            "production settings.",
            id="django_trakt.E005",
        )
    ]
