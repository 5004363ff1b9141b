"""``manage.py rotate_trakt_keys``: re-encrypt stored tokens with the first key.

A thin command over :func:`django_trakt.internal.links.rotation.rotate_keys`. Its exit statuses are
``Command.exit_statuses``, listed by ``--help``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_trakt.exceptions import TraktConfigurationError
from django_trakt.internal.links import crypto
from django_trakt.internal.links.rotation import DEFAULT_BATCH_SIZE, RotationReport, rotate_keys
from django_trakt.management.base import EXIT_USAGE, TraktCommand, UsageError

EXIT_UNREADABLE = 1


class Command(TraktCommand):
    help = (
        "Re-encrypt every stored Trakt token with the first key of TRAKT_TOKEN_KEYS, "
        "so that the older keys can then be removed. Safe to run again."
    )
    exit_statuses = (
        (0, "every token is encrypted with the first key (with --dry-run: would be)"),
        (
            EXIT_UNREADABLE,
            "some tokens cannot be decrypted with any configured key: they are flagged and left as they are, "
            "the rest are re-encrypted",
        ),
        (EXIT_USAGE, "a bad option, or unusable TRAKT_TOKEN_KEYS (nothing was touched)"),
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help="Rows per transaction (default: %(default)s).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be re-encrypted; write nothing.",
        )

    def handle(self, *args: Any, batch_size: int, dry_run: bool, verbosity: int, **options: Any) -> None:
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, not {batch_size}.")
        try:
            keys = crypto.configured_keys()
        except TraktConfigurationError as err:
            raise CommandError(str(err), returncode=EXIT_USAGE) from err
        if verbosity >= 2:
            source = "derived from SECRET_KEY" if crypto.uses_derived_keys() else "in TRAKT_TOKEN_KEYS"
            self.stdout.write(f"{len(keys)} key(s) {source}; encrypting with the first.")

        def progress(report: RotationReport) -> None:
            if verbosity >= 2:
                self.stdout.write(f"  {report.total} tokens checked so far")

        report = rotate_keys(batch_size=batch_size, dry_run=dry_run, progress=progress)
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        summary = (
            f"{verb} {report.rotated} token(s) with the first key; "
            f"{report.already_current} already current; {report.unreadable} unreadable."
        )
        flagged = "would be flagged" if dry_run else "were flagged"
        if report.corrupted:
            # No key helps these, so they do not keep the old keys in place (exit code unchanged).
            self.stdout.write(
                self.style.WARNING(
                    f"{report.corrupted} token(s) are corrupted (the stored ciphertext is damaged): they {flagged} "
                    "corrupted and left unchanged; those users must sign in with Trakt again."
                )
            )
        if report.unreadable:
            self.stdout.write(self.style.WARNING(summary))
            raise CommandError(
                f"{report.unreadable} token(s) cannot be decrypted with any configured key: they {flagged} "
                "unreadable and left unchanged. Put their key back in TRAKT_TOKEN_KEYS (after the first) and run "
                "again, or have those users sign in with Trakt again. Do not remove old keys yet.",
                returncode=EXIT_UNREADABLE,
            )
        self.stdout.write(self.style.SUCCESS(summary))
        if not dry_run and report.total:
            which = "other stored" if report.corrupted else "stored"
            self.stdout.write(f"Every {which} token now decrypts with the first key: older keys can be removed.")
