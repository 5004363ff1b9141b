"""Key rotation: re-encrypt with the first key, then the old key can go."""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError
from django_trakt.internal.links import crypto
from django_trakt.internal.links.rotation import RotationReport, rotate_keys
from django_trakt.models import TraktToken

pytestmark = pytest.mark.django_db

OLD = settings.TRAKT_TOKEN_KEYS[0]
NEW = Fernet.generate_key().decode()
LOST = Fernet.generate_key().decode()


def raw_columns():
    """{pk: (access ciphertext, refresh ciphertext)} straight from the table."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, access_token_encrypted, refresh_token_encrypted FROM django_trakt_trakttoken")
        return {pk: (access, refresh) for pk, access, refresh in cursor.fetchall()}


def plain_tokens(pks=None):
    tokens = TraktToken.objects.all() if pks is None else TraktToken.objects.filter(pk__in=pks)
    return {token.pk: (token.access_token, token.refresh_token) for token in tokens}


@pytest.fixture
def tokens(linked):
    """Five links whose tokens are encrypted with the old key (the test settings' key)."""
    for _ in range(5):
        linked()
    return plain_tokens()


def rotate(*args):
    out = StringIO()
    call_command("rotate_trakt_keys", *args, stdout=out)
    return out.getvalue()


# -- the function ------------------------------------------------------------------------------


def test_rotation_then_removal_of_old_key_keeps_every_token_readable(tokens):
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        report = rotate_keys(batch_size=2)  # several batches
    assert report == RotationReport(rotated=5, already_current=0, unreadable=0)
    after = raw_columns()
    assert all(after[pk][0] != before[pk][0] and after[pk][1] != before[pk][1] for pk in before)
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert plain_tokens() == tokens
        assert set(TraktToken.objects.values_list("status", flat=True)) == {TraktToken.Status.ACTIVE}
    # And the old key alone no longer reads them.
    with override_settings(TRAKT_TOKEN_KEYS=[OLD]), pytest.raises(TokenDecryptionError):
        crypto.decrypt(next(iter(after.values()))[0])


def test_second_run_reports_everything_current_and_writes_nothing(tokens):
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        rotate_keys()
        first = raw_columns()
        updated_at = dict(TraktToken.objects.values_list("pk", "updated_at"))
        assert rotate_keys(batch_size=3) == RotationReport(rotated=0, already_current=5, unreadable=0)
    assert raw_columns() == first
    assert dict(TraktToken.objects.values_list("pk", "updated_at")) == updated_at


def test_rows_written_with_the_new_key_count_as_current(tokens, linked):
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        linked()  # stored after the new key went first
        assert rotate_keys() == RotationReport(rotated=5, already_current=1, unreadable=0)


def test_unreadable_row_is_counted_flagged_and_left_unchanged(tokens, linked):
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        _user, lost = linked()
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        report = rotate_keys(batch_size=2)
    assert report == RotationReport(rotated=5, already_current=0, unreadable=1)
    assert raw_columns()[lost.pk] == before[lost.pk]
    lost.refresh_from_db()
    assert lost.status == TraktToken.Status.UNREADABLE and "decrypt" in lost.last_error
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert plain_tokens(tokens) == tokens


def test_unreadable_row_heals_once_its_key_is_back(tokens, linked):
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        _user, lost = linked()
        plain = (lost.access_token, lost.refresh_token)
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        rotate_keys()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD, LOST]):
        assert rotate_keys() == RotationReport(rotated=1, already_current=5, unreadable=0)
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        lost.refresh_from_db()
        assert lost.status == TraktToken.Status.ACTIVE and lost.last_error == ""
        assert (lost.access_token, lost.refresh_token) == plain


def test_dry_run_counts_and_writes_nothing(tokens, linked):
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        _user, lost = linked()
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys(dry_run=True) == RotationReport(rotated=5, already_current=0, unreadable=1)
    assert raw_columns() == before
    lost.refresh_from_db()
    assert lost.status == TraktToken.Status.ACTIVE


def test_empty_refresh_token_is_kept_empty(linked):
    _user, token = linked()
    TraktToken.objects.filter(pk=token.pk).update(refresh_token_encrypted="")
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys() == RotationReport(rotated=1)
    assert raw_columns()[token.pk][1] == ""


def test_rotation_logs_no_token(tokens, linked, caplog):
    caplog.set_level(logging.DEBUG)
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        linked()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        rotate_keys()
    assert "cannot be decrypted" in caplog.text
    for access, refresh in raw_columns().values():
        assert access not in caplog.text and refresh not in caplog.text
    for access, refresh in tokens.values():
        assert access not in caplog.text and refresh not in caplog.text


def test_rotation_refuses_bad_batch_size_and_malformed_keys(tokens):
    with pytest.raises(ValueError):
        rotate_keys(batch_size=0)
    with override_settings(TRAKT_TOKEN_KEYS=["not-a-key", OLD]), pytest.raises(TraktConfigurationError):
        rotate_keys()


# -- the command ----------------------------------------------------------------------------------


def test_command_rotates_and_reports_counts(tokens):
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        output = rotate("--batch-size", "2")
        assert "Re-encrypted 5 token(s) with the first key; 0 already current; 0 unreadable." in output
        assert "older keys can be removed" in output
        again = rotate()
        assert "Re-encrypted 0 token(s) with the first key; 5 already current; 0 unreadable." in again
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert plain_tokens() == tokens


def test_command_dry_run_writes_nothing(tokens):
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        output = rotate("--dry-run")
    assert "Would re-encrypt 5 token(s)" in output and "can be removed" not in output
    assert raw_columns() == before


def test_command_verbose_reports_progress_per_batch(tokens):
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        output = rotate("--batch-size", "2", "--verbosity", "2")
    assert "2 key(s) in TRAKT_TOKEN_KEYS; encrypting with the first." in output
    assert [line.strip() for line in output.splitlines() if "checked so far" in line] == [
        "2 tokens checked so far",
        "4 tokens checked so far",
        "5 tokens checked so far",
    ]


def test_command_exits_1_when_tokens_are_unreadable_after_rotating_the_rest(tokens, linked):
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        linked()
    out = StringIO()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]), pytest.raises(CommandError) as excinfo:
        call_command("rotate_trakt_keys", stdout=out)
    assert excinfo.value.returncode == 1
    assert "1 token(s) cannot be decrypted" in str(excinfo.value) and "Do not remove old keys" in str(excinfo.value)
    assert "Re-encrypted 5 token(s) with the first key; 0 already current; 1 unreadable." in out.getvalue()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert plain_tokens(tokens) == tokens


@pytest.mark.parametrize("value", ["0", "-5"])
def test_command_bad_batch_size_exits_2_and_touches_nothing(tokens, value):
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]), pytest.raises(CommandError) as excinfo:
        rotate("--batch-size", value)
    assert excinfo.value.returncode == 2 and "--batch-size must be at least 1" in str(excinfo.value)
    assert raw_columns() == before


def test_command_non_numeric_batch_size_is_a_usage_error():
    with pytest.raises(CommandError, match="invalid int value"):
        rotate("--batch-size", "lots")


def test_command_malformed_key_exits_2_without_showing_the_key(tokens):
    before = raw_columns()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, "not-a-key"]), pytest.raises(CommandError) as excinfo:
        rotate()
    assert excinfo.value.returncode == 2
    assert "TRAKT_TOKEN_KEYS[1]" in str(excinfo.value) and "not-a-key" not in str(excinfo.value)
    assert raw_columns() == before
