"""Trim the ``extra_data`` of existing Trakt links to the provider's allow-list.

Until this release allauth stored Trakt's whole ``/users/settings`` document (account
settings, ``account.token``, linked services, location, about, gender, age...). New
sign-ins store only ``django_trakt.provider.EXTRA_DATA_FIELDS``; this trims the rows
written before. Reversing it restores nothing (the dropped fields are gone) and is a
no-op; the next sign-in of each user stores their allowed fields afresh anyway.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# A frozen copy of django_trakt.provider.EXTRA_DATA_FIELDS and trim_extra_data as of
# this migration: a migration must keep doing what it did when it was written, whatever
# the app's code becomes later. Do not import them from the app.
FIELDS: tuple[tuple[str, ...], ...] = (
    ("user", "username"),
    ("user", "name"),
    ("user", "private"),
    ("user", "vip"),
    ("user", "vip_ep"),
    ("user", "joined_at"),
    ("user", "ids", "slug"),
    ("user", "ids", "uuid"),
    ("user", "ids", "trakt"),
    ("user", "images", "avatar", "full"),
)
_SCALARS = (str, int, float, bool, type(None))
PROVIDER = "trakt"
BATCH_SIZE = 500


def trim(data: Any) -> dict[str, Any]:
    trimmed: dict[str, Any] = {}
    for path in FIELDS:
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node or not isinstance(node[path[-1]], _SCALARS):
            continue
        target = trimmed
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = node[path[-1]]
    return trimmed


def trim_trakt_extra_data(apps: Any, schema_editor: Any) -> None:
    social_account = apps.get_model("socialaccount", "SocialAccount")
    rows = social_account.objects.using(schema_editor.connection.alias).filter(provider=PROVIDER)
    last_pk: Any = None
    # In primary-key batches, not one streamed cursor: SQLite gives no isolation between
    # a cursor being read and writes to its table on the same connection.
    while True:
        batch = rows.order_by("pk").only("pk", "extra_data")
        if last_pk is not None:
            batch = batch.filter(pk__gt=last_pk)
        accounts = list(batch[:BATCH_SIZE])
        if not accounts:
            return
        last_pk = accounts[-1].pk
        changed = []
        for account in accounts:
            trimmed = trim(account.extra_data)
            if trimmed != account.extra_data:
                account.extra_data = trimmed
                changed.append(account)
        if changed:
            rows.bulk_update(changed, ["extra_data"])


class Migration(migrations.Migration):
    dependencies = [
        ("django_trakt", "0002_alter_trakttoken_status"),
        # Where allauth's extra_data became a JSONField (the latest socialaccount migration).
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
    ]

    operations = [
        migrations.RunPython(trim_trakt_extra_data, migrations.RunPython.noop, elidable=True),
    ]
