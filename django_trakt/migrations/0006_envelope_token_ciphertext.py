"""Wrap every stored token ciphertext in django-trakt's envelope: ``"<digest>:<Fernet token>"``.

From this release ``django_trakt.links.crypto`` writes the envelope and tells damage from
a wrong key with its digest, never by parsing the Fernet token (see that module). This
wraps the values written before: the access and refresh columns of ``TraktToken`` and the
access column of ``PendingGrant`` (all ``TextField``: no length to outgrow; the envelope
adds 23 characters). The digest is keyless, so no key is needed and none is used.

Values already in an intact envelope are left alone (running it twice changes nothing);
empty columns stay empty. Reversing it takes the Fernet token back out of every intact
envelope, for the previous release, which reads bare tokens only.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from django.db import migrations

# A frozen copy of django_trakt.links.crypto.integrity_digest and envelope as of this
# migration: a migration must keep doing what it did when it was written, whatever the
# app's code becomes later. Do not import them from the app.
SEPARATOR = ":"
BATCH_SIZE = 500
COLUMNS = {
    "TraktToken": ("access_token_encrypted", "refresh_token_encrypted"),
    "PendingGrant": ("access_token_encrypted",),
}


def envelope(token: str) -> str:
    digest = hashlib.sha256(token.encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=") + SEPARATOR + token


def unwrapped(value: str) -> str | None:
    """The token inside ``value`` when it is an intact envelope, else ``None``."""
    _digest, separator, token = value.partition(SEPARATOR)
    return token if separator and value.isascii() and value == envelope(token) else None


def wrap(value: str) -> str:
    return value if not value or unwrapped(value) is not None else envelope(value)


def unwrap(value: str) -> str:
    token = unwrapped(value)
    return value if token is None else token


def _convert(apps: Any, schema_editor: Any, change: Any) -> None:
    for model_name, columns in COLUMNS.items():
        model = apps.get_model("django_trakt", model_name)
        rows = model.objects.using(schema_editor.connection.alias)
        last_pk: Any = None
        # In primary-key batches, not one streamed cursor: SQLite gives no isolation
        # between a cursor being read and writes to its table on the same connection.
        while True:
            batch = rows.order_by("pk").only("pk", *columns)
            if last_pk is not None:
                batch = batch.filter(pk__gt=last_pk)
            instances = list(batch[:BATCH_SIZE])
            if not instances:
                break
            last_pk = instances[-1].pk
            changed = []
            for instance in instances:
                before = [getattr(instance, column) for column in columns]
                after = [change(value) for value in before]
                if after != before:
                    for column, value in zip(columns, after, strict=True):
                        setattr(instance, column, value)
                    changed.append(instance)
            if changed:
                # bulk_update leaves updated_at alone: no token changed.
                rows.bulk_update(changed, list(columns))


def wrap_ciphertexts(apps: Any, schema_editor: Any) -> None:
    _convert(apps, schema_editor, wrap)


def unwrap_ciphertexts(apps: Any, schema_editor: Any) -> None:
    _convert(apps, schema_editor, unwrap)


class Migration(migrations.Migration):
    dependencies = [
        ("django_trakt", "0005_trakttoken_email_unproven"),
    ]

    operations = [
        migrations.RunPython(wrap_ciphertexts, unwrap_ciphertexts),
    ]
