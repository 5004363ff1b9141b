"""System checks: misconfiguration shows up in ``manage.py check``, not as a crash.

One module per concern; importing this package registers every check. The ids are stable
and documented in the README ("System checks"):

- :mod:`~django_trakt.checks.settings`: the settings themselves, one id per kind of fault
  (E101 a wrong type or range, E102 a name that names nothing, W101 an unknown name, W103
  a removed setting still set);
- :mod:`~django_trakt.checks.security`: the token keys (E001, W001), allauth's plain copy
  of the tokens (W002), development image origins in a deployment (E005);
- :mod:`~django_trakt.checks.accounts`: allauth's account settings as Trakt sign-ins need
  them (W003, W008, W009, W010, E006);
- :mod:`~django_trakt.checks.site`: the Trakt app, the callback and the Site (E002, E003,
  W004 to W007);
- :mod:`~django_trakt.checks.background`: the task backend and its cache (E004, W011, W012).

The check functions are named here too, for a site's tests that call one directly.
"""

from django_trakt.checks.accounts import (
    check_account_adapter,
    check_email_on_signup,
    check_email_verification,
    check_login_redirect_url,
    check_signup_mail_delivery,
)
from django_trakt.checks.background import check_task_backend
from django_trakt.checks.security import check_allauth_token_copy, check_development_image_origins, check_token_keys
from django_trakt.checks.settings import check_removed_settings, check_settings, check_unknown_settings
from django_trakt.checks.site import (
    check_callback_https,
    check_refresh_redirect_uri,
    check_refresh_site_domain,
    check_secret_in_database,
    check_trakt_app_configured,
    check_trakt_app_credentials,
    check_trakt_app_settings,
)

__all__ = [
    "check_account_adapter",
    "check_allauth_token_copy",
    "check_callback_https",
    "check_development_image_origins",
    "check_email_on_signup",
    "check_email_verification",
    "check_login_redirect_url",
    "check_refresh_redirect_uri",
    "check_refresh_site_domain",
    "check_removed_settings",
    "check_secret_in_database",
    "check_settings",
    "check_signup_mail_delivery",
    "check_task_backend",
    "check_token_keys",
    "check_trakt_app_configured",
    "check_trakt_app_credentials",
    "check_trakt_app_settings",
    "check_unknown_settings",
]
