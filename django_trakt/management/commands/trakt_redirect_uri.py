"""``manage.py trakt_redirect_uri``: print the redirect URI to register with Trakt.

The URL is built by allauth exactly as the login builds it (see
:mod:`django_trakt.internal.links.redirect_uri`). Only the URL goes to stdout, so it can be piped;
notes go to stderr.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError
from django.urls import NoReverseMatch

from django_trakt.internal.links.redirect_uri import PLACEHOLDER_DOMAIN, split_host, trakt_callback_url_for_host
from django_trakt.management.base import TraktCommand, UsageError

LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}


def _site_domain() -> str:
    """The current ``Site``'s domain (``SITE_ID``), or :class:`CommandError`."""
    if not apps.is_installed("django.contrib.sites"):
        raise CommandError(
            "The sites framework is not installed, so this site's host is only known from a request: "
            "pass it with --host, e.g. --host media.example.com --https."
        )
    from django.contrib.sites.models import Site

    try:
        domain = Site.objects.get_current().domain
    except ImproperlyConfigured as err:
        raise CommandError(f"The sites framework cannot tell the current site ({err}); pass --host.") from err
    except Site.DoesNotExist as err:
        raise CommandError("The Site of SITE_ID does not exist; create it in the admin or pass --host.") from err
    except DatabaseError as err:
        raise CommandError("The sites table cannot be read (run manage.py migrate first), or pass --host.") from err
    if not domain.strip():
        raise CommandError("The current Site has an empty domain; set it in the admin or pass --host.")
    return domain.strip()


def _checked_host(value: str) -> str:
    """``value`` stripped, or a usage error (exit status 2) when it is not a host (and port)."""
    host = value.strip()
    if "://" in host:
        scheme = host.split("://", 1)[0].lower()
        raise UsageError(
            f"--host takes a host name (and port), not a URL: use --host {host.split('://', 1)[1].split('/')[0]} "
            f"--{'https' if scheme == 'https' else 'http'}."
        )
    if not host or "/" in host or any(character.isspace() for character in host):
        raise UsageError(f"--host {value!r} is not a host name: give e.g. example.com or nas.local:8000.")
    domain, _port = split_host(host)
    if not domain:
        raise UsageError(f"--host {value!r} is not a valid host name (and optional port).")
    return host


class Command(TraktCommand):
    help = (
        "Print the redirect URI to register for your app on trakt.tv: exactly the callback URL "
        "this site sends to Trakt, built by allauth (host from --host or the sites framework; "
        "https when the request is secure or ACCOUNT_DEFAULT_HTTP_PROTOCOL is 'https')."
    )
    exit_statuses = (
        (0, "the redirect URI is on stdout (notes, if any, on stderr)"),
        (1, "the site cannot tell its redirect URI (the message says what to set, or pass --host)"),
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            help="The host (and port) people use to reach the site, e.g. media.example.com or nas.local:8000. "
            "(default: the domain of the current Site, from the sites framework).",
        )
        scheme = parser.add_mutually_exclusive_group()
        scheme.add_argument(
            "--https",
            dest="scheme",
            action="store_const",
            const="https",
            help="Requests reach Django over HTTPS (directly or via SECURE_PROXY_SSL_HEADER).",
        )
        scheme.add_argument(
            "--http",
            dest="scheme",
            action="store_const",
            const="http",
            help="Requests reach Django over plain HTTP (default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host_option = options.get("host")
        from_site = host_option is None
        host = _site_domain() if host_option is None else _checked_host(host_option)
        scheme = options.get("scheme")
        secure = scheme == "https"
        try:
            url = trakt_callback_url_for_host(host, secure=secure)
        except DisallowedHost as err:
            if from_site and host == PLACEHOLDER_DOMAIN:
                raise CommandError(
                    f"The current Site still has Django's placeholder domain {PLACEHOLDER_DOMAIN!r}: set your real "
                    "domain in the admin (Sites), or pass --host."
                ) from err
            raise CommandError(
                f"{host!r} is not in ALLOWED_HOSTS: Django would refuse requests for it, so Trakt's redirect "
                "could not arrive. Add it to ALLOWED_HOSTS, or pass the host the site is really served at."
            ) from err
        except NoReverseMatch as err:
            raise CommandError(
                "allauth's URLs are not installed: add path('accounts/', include('allauth.urls')) to your URLconf."
            ) from err
        self.stdout.write(url)
        self._notes(url, host, from_site=from_site, scheme=scheme, verbosity=options.get("verbosity", 1))

    def _notes(self, url: str, host: str, *, from_site: bool, scheme: str | None, verbosity: int) -> None:
        if verbosity < 1:
            return
        notes = []
        if from_site and host == PLACEHOLDER_DOMAIN:
            notes.append(
                f"The current Site still has Django's placeholder domain {PLACEHOLDER_DOMAIN!r}: set your real "
                "domain in the admin (Sites), or pass --host."
            )
        if scheme == "http" and url.startswith("https://"):
            notes.append("ACCOUNT_DEFAULT_HTTP_PROTOCOL is 'https', so allauth sends https even for --http.")
        domain, _port = split_host(host)
        if url.startswith("http://") and domain not in LOOPBACK:
            notes.append(
                "This is an http:// URL: Trakt asks for HTTPS. If the site is served over HTTPS, pass --https, "
                "and set ACCOUNT_DEFAULT_HTTP_PROTOCOL = 'https' so allauth sends it whatever the proxy says."
            )
        for note in notes:
            self.stderr.write(note, style_func=self.style.WARNING)
