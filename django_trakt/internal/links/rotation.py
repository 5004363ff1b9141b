"""Key rotation: re-encrypt every stored token with the first key of ``TRAKT_TOKEN_KEYS``.

Steps (see ``docs/operations.md``): put the new key first and keep the old ones after
it, deploy, run ``manage.py rotate_trakt_keys``, then remove the old keys.

- **Streams.** Rows are read in primary-key order, ``batch_size`` at a time (keyset
  pagination), so memory stays flat and no cursor is held open across the batches'
  commits. Each batch is one transaction that locks its rows
  (``SELECT ... FOR UPDATE`` on PostgreSQL): a refresh running at the same time waits
  for the batch or is waited for, and its new token pair is never overwritten with a
  re-encrypted copy of the old, already spent one.
- **Can be run again.** Fernet tokens do not name their key, so "already current"
  means "in our envelope and decrypts with the first key alone" (``crypto.is_current``):
  such rows are not written again, and a second run reports every readable row as
  already current. A value written before the envelope is rewritten in it.
- **Rows that do not decrypt are not fatal.** They are counted and left exactly as they
  are: ``unreadable`` (no configured key opens them: flagged ``UNREADABLE``, readable
  again once their key is put back) apart from ``corrupted`` (the stored ciphertext is
  damaged: flagged ``CORRUPTED``, only a new sign-in helps). The flags follow the
  model's rule (``TraktToken.checked_state``): ``NEEDS_REAUTH`` and ``REVOKED`` are
  never overwritten, and a flagged row heals to ``ACTIVE`` only when both its columns
  decrypt.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from django_trakt.internal.links import crypto
from django_trakt.models import TraktToken

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class RotationReport:
    """What a rotation did (or, in a dry run, would do), in rows of ``TraktToken``."""

    rotated: int = 0
    already_current: int = 0
    #: No configured key decrypts them (put their key back).
    unreadable: int = 0
    #: Their stored ciphertext is damaged (their users must sign in with Trakt again).
    corrupted: int = 0

    @property
    def total(self) -> int:
        return self.rotated + self.already_current + self.unreadable + self.corrupted

    def __add__(self, other: RotationReport) -> RotationReport:
        return RotationReport(
            rotated=self.rotated + other.rotated,
            already_current=self.already_current + other.already_current,
            unreadable=self.unreadable + other.unreadable,
            corrupted=self.corrupted + other.corrupted,
        )


def _reencrypted(ciphertext: str) -> str:
    # An empty column (no refresh token stored) stays empty.
    return ciphertext if not ciphertext or crypto.is_current(ciphertext) else crypto.reencrypt(ciphertext)


def rotate_keys(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-encrypt every stored token with the first configured key.

    ``dry_run`` writes nothing (not even a status flag) and reports what a
    real run would do. ``progress`` is called with the running totals after each
    batch. Raises :class:`~django_trakt.exceptions.TraktConfigurationError` (before
    touching anything) when the configured keys are unusable.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    crypto.configured_keys()  # unusable keys raise here, before any row is read
    report = RotationReport()
    last_pk = None
    while True:
        pks = TraktToken.objects.order_by("pk")
        if last_pk is not None:
            pks = pks.filter(pk__gt=last_pk)
        batch = list(pks.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return report
        last_pk = batch[-1]
        report += _rotate_batch(batch, dry_run=dry_run)
        if progress is not None:
            progress(report)


def _rotate_batch(pks: list[int], *, dry_run: bool) -> RotationReport:
    rotated: list[TraktToken] = []
    # Rows whose status changes (healed or flagged), by their new (status, last_error):
    # one UPDATE per kind of change rather than one per row.
    changes: dict[tuple[str, str], list[int]] = defaultdict(list)
    unreadable = corrupted = already_current = 0
    with transaction.atomic():
        rows = (
            TraktToken.objects.select_for_update()
            .filter(pk__in=pks)
            .order_by("pk")
            .values_list(
                "pk", "account_id", "status", "last_error", "access_token_encrypted", "refresh_token_encrypted"
            )
        )
        for pk, account_id, status, last_error, access, refresh in rows:
            errors = TraktToken.diagnose(access, refresh)
            state = TraktToken.checked_state(status, last_error, errors)
            if state != (status, last_error):
                changes[state].append(pk)
            flag = TraktToken.decryption_status(errors)
            if flag is not None:
                TraktToken.log_decryption_state(account_id, flag)
                if flag == TraktToken.Status.CORRUPTED:
                    corrupted += 1
                else:
                    unreadable += 1
                continue
            new_access, new_refresh = _reencrypted(access), _reencrypted(refresh)
            if (new_access, new_refresh) == (access, refresh):
                already_current += 1
            else:
                rotated.append(
                    TraktToken(pk=pk, access_token_encrypted=new_access, refresh_token_encrypted=new_refresh)
                )
        if not dry_run:
            # bulk_update leaves updated_at alone: rotating keys changes no token.
            TraktToken.objects.bulk_update(rotated, ["access_token_encrypted", "refresh_token_encrypted"])
            for (new_status, new_last_error), changed in changes.items():
                TraktToken.objects.filter(pk__in=changed).update(status=new_status, last_error=new_last_error)
    return RotationReport(
        rotated=len(rotated), already_current=already_current, unreadable=unreadable, corrupted=corrupted
    )
