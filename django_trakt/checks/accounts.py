"""Checks of allauth's account settings as Trakt sign-ins need them: an email at signup (W003), its
proof (W008), the mail that proves it (W009), the adapter that tells a confirmation from a claim
(E006), and where a sign-in lands (W010)."""

from __future__ import annotations

from typing import Any

from django.core import checks


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


@checks.register(checks.Tags.security)
def check_account_adapter(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E006: without the adapter's hook, a confirmation cannot be told from a claim."""
    from allauth.account import app_settings as account_settings
    from django.utils.module_loading import import_string

    from django_trakt.account_adapter import TraktAccountAdapterMixin

    try:
        adapter = import_string(account_settings.ADAPTER)
    except ImportError:
        adapter = None
    if isinstance(adapter, type) and issubclass(adapter, TraktAccountAdapterMixin):
        return []
    return [
        checks.Error(
            f"ACCOUNT_ADAPTER ({account_settings.ADAPTER}) does not include django-trakt's "
            "TraktAccountAdapterMixin: the links' trust model cannot tell an address confirmed through "
            "its confirmation mail from one verified by a password reset or login code, and takes every "
            "confirmation of a signup address for a claim of the account (its links removed).",
            hint='Set ACCOUNT_ADAPTER = "django_trakt.account_adapter.TraktAccountAdapter", or list '
            "django_trakt.account_adapter.TraktAccountAdapterMixin first in your adapter's bases; "
            "see docs/security.md.",
            id="django_trakt.E006",
        )
    ]


SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@checks.register()
def check_signup_mail_delivery(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W009: in development, a Trakt signup sends a confirmation mail to an SMTP server nobody configured."""
    from allauth.account import app_settings as account_settings
    from django.conf import settings

    method = account_settings.EmailVerificationMethod
    if not settings.DEBUG or account_settings.EMAIL_VERIFICATION not in (method.MANDATORY, method.OPTIONAL):
        return []
    # Django's own defaults, i.e. never configured; no connection is tried (a check must
    # not depend on the network), so a real local relay on localhost is the one false alarm.
    mailers = getattr(settings, "MAILERS", None)  # Django 6.1+, when the site defines it
    if mailers is not None:
        default = mailers.get("default") if isinstance(mailers, dict) else None
        options = default.get("OPTIONS") if isinstance(default, dict) else None
        host = options.get("host") if isinstance(options, dict) else None
        if not isinstance(default, dict) or default.get("BACKEND") != SMTP_BACKEND or host not in (None, "localhost"):
            return []
        setting = 'MAILERS["default"]'
        fix = 'set its "BACKEND" to "django.core.mail.backends.console.EmailBackend" (mails are printed)'
        elsewhere = 'set its "OPTIONS" ("host", "port", "username", ...) to your mail server'
    else:
        if settings.EMAIL_BACKEND != SMTP_BACKEND or settings.EMAIL_HOST != "localhost":
            return []
        setting = "EMAIL_BACKEND and EMAIL_HOST"
        fix = 'set EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend" (mails are printed)'
        elsewhere = "set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, ...) to your mail server"
    return [
        checks.Warning(
            f"ACCOUNT_EMAIL_VERIFICATION is {str(account_settings.EMAIL_VERIFICATION.value)!r}, so a Trakt signup "
            f"sends a confirmation mail, but the mail settings ({setting}) are Django's defaults (SMTP on "
            "localhost): without a mail server there, the signup fails with ConnectionRefusedError (a server "
            "error, after the user was saved).",
            hint=f"In development {fix}; otherwise {elsewhere}.",
            id="django_trakt.W009",
        )
    ]


@checks.register(checks.Tags.urls)
def check_login_redirect_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W010: after signing in (with Trakt or not), allauth redirects to LOGIN_REDIRECT_URL, which leads nowhere."""
    from urllib.parse import urlsplit

    from django.conf import settings
    from django.urls import NoReverseMatch, Resolver404, get_resolver, resolve, reverse

    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    try:
        # Importing the site's URLconf runs its code, which may raise anything: Django's
        # own URL checks and every request report that, so this check stays out of it.
        get_resolver().url_patterns  # noqa: B018
    except Exception:
        return []
    value = settings.LOGIN_REDIRECT_URL
    try:
        target = str(value)  # a reverse_lazy() is resolved here
    except NoReverseMatch:
        target = None
    hint = (
        'Set LOGIN_REDIRECT_URL to a page of the site: a URL name (LOGIN_REDIRECT_URL = "home") or a path '
        'that exists (LOGIN_REDIRECT_URL = "/"). Django\'s default "/accounts/profile/" is not an allauth page.'
    )
    if target is None:
        return [
            checks.Warning(
                "LOGIN_REDIRECT_URL is a reverse_lazy() that does not reverse: every sign-in ends in a server error.",
                hint=hint,
                id="django_trakt.W010",
            )
        ]
    parts = urlsplit(target)
    if not target or parts.scheme or parts.netloc or target.startswith(("./", "../")):
        return []  # another site, or relative: nothing this site can resolve
    # The same order as django.shortcuts.resolve_url, which allauth uses.
    try:
        reverse(target)
        return []
    except NoReverseMatch:
        pass
    if "/" not in target and "." not in target:
        return [
            checks.Warning(
                f"LOGIN_REDIRECT_URL = {target!r} is not a URL name of this site: every sign-in (with Trakt too) "
                "ends in a server error (NoReverseMatch).",
                hint=hint,
                id="django_trakt.W010",
            )
        ]
    if not parts.path.startswith("/"):
        return []  # a relative path: where it leads depends on the page
    path = parts.path
    script_name = (getattr(settings, "FORCE_SCRIPT_NAME", None) or "").rstrip("/")
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name) :] or "/"
    try:
        resolve(path)
        return []
    except Resolver404:
        pass
    return [
        checks.Warning(
            f"LOGIN_REDIRECT_URL = {target!r} matches no URL of this site: after signing in (with Trakt too), "
            "users land on a 404 page.",
            hint=hint,
            id="django_trakt.W010",
        )
    ]
