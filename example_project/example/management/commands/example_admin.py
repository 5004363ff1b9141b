"""``manage.py example_admin``: the example's superuser for /admin/, created on the first run.

The password is fixed and printed on purpose: this is a local demo on loopback, and a
password shown once would be lost by the next start. Change it in /admin/ and it is no
longer printed.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "admin"
PASSWORD = "local-demo-admin"  # noqa: S105 (documented demo password of a loopback site)


class Command(BaseCommand):
    help = "Create the example's superuser 'admin' if missing and say how to sign in to /admin/."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--site", default="http://127.0.0.1:8000", help="the site's address, for the message")

    def handle(self, *args: Any, site: str, **options: Any) -> None:
        users = get_user_model()
        admin = users.objects.filter(username=USERNAME).first()
        if admin is None:
            users.objects.create_superuser(USERNAME, email="admin@example.com", password=PASSWORD)
            self.stdout.write(f"Created the superuser '{USERNAME}'.")
        elif not admin.check_password(PASSWORD):
            self.stdout.write(f"Admin on {site}/admin/ as '{USERNAME}' (with the password you set).")
            return
        self.stdout.write(f"Admin on {site}/admin/ as '{USERNAME}', password '{PASSWORD}' (local demo only).")
