"""A site on a file SQLite database, set up and read from its own processes.

    python -m tests.sqlite_site seed LINKS.json   # create the users and their Trakt links, all due
    python -m tests.sqlite_site expire            # make every link due again
    python -m tests.sqlite_site dump              # print every link (status, decrypted tokens) as JSON

Run with ``DJANGO_SETTINGS_MODULE=tests.settings`` and ``DATABASE_URL=sqlite:///<file>`` (a
migrated file). tests/test_sqlite_file_site.py uses it: the pytest process is configured for
the pytest-django test database (PostgreSQL in the PostgreSQL pass), so the file is only ever
opened by processes configured the way a real SQLite site is.

``LINKS.json`` is a list of ``{"username", "uuid", "slug", "tokens"}``, ``tokens`` being a
token response of the local Trakt (``TraktEmulator.issue_tokens``).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import django


def seed(path: str) -> None:
    from allauth.socialaccount.models import SocialAccount
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sites.models import Site
    from django.db import transaction

    from django_trakt.internal.api.tokens import grant_from_response
    from django_trakt.models import TraktToken

    with transaction.atomic():
        # A refresh builds its redirect URI from the Site, and refuses Django's placeholder
        # example.com; the local Trakt knows the test site's callback on "testserver".
        Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": "testserver", "name": "Test site"})
        for link in json.loads(Path(path).read_text()):
            username, uuid, slug = link["username"], link["uuid"], link["slug"]
            user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw")
            account = SocialAccount.objects.create(
                user=user,
                provider="trakt",
                uid=uuid,
                extra_data={"user": {"username": username, "ids": {"slug": slug, "uuid": uuid}}},
            )
            TraktToken.objects.store_grant(account, grant_from_response(link["tokens"]))
    expire()


def expire() -> None:
    """Every link due now, whatever lifetime Trakt gave its access token."""
    from django.utils import timezone

    from django_trakt.models import TraktToken

    TraktToken.objects.update(expires_at=timezone.now() - dt.timedelta(minutes=1))


def dump() -> None:
    from django_trakt.models import TraktToken

    links = TraktToken.objects.select_related("account__user").order_by("account__user__username")
    rows = [
        {
            "username": token.account.user.get_username(),
            "status": token.status,
            # Decrypted: the test checks them against the local Trakt.
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
        }
        for token in links
    ]
    print(json.dumps(rows))


def main(argv: list[str]) -> int:
    django.setup()
    match argv:
        case ["seed", path]:
            seed(path)
        case ["expire"]:
            expire()
        case ["dump"]:
            dump()
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
