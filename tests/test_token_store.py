"""TraktToken: plain strings in Python, Fernet ciphertext (in the app's envelope) in the database."""

from __future__ import annotations

import datetime as dt
import importlib
import types

import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings

from django_trakt.exceptions import TokenDecryptionError, TraktConfigurationError, TraktMalformedResponse
from django_trakt.internal.api.tokens import TokenGrant, grant_from_response
from django_trakt.internal.links import crypto
from django_trakt.models import PendingGrant, TraktToken
from tests.envelopes import envelope, opened

ACCESS = "a" * 32 + "plain-access"
REFRESH = "r" * 32 + "plain-refresh"


@pytest.fixture
def account(db):
    user = get_user_model().objects.create_user("watcher", "watcher@example.com", "pw")
    return SocialAccount.objects.create(
        user=user,
        provider="trakt",
        uid="uuid-1",
        extra_data={"user": {"username": "Watcher", "ids": {"slug": "watcher"}}},
    )


def grant(access=ACCESS, refresh=REFRESH):
    return TokenGrant(access, refresh, "bearer", "public", None)


def raw_columns(pk):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token_encrypted, refresh_token_encrypted FROM django_trakt_trakttoken WHERE id = %s", [pk]
        )
        return cursor.fetchone()


def test_token_round_trip_plain_in_python_encrypted_in_database(account):
    token = TraktToken.objects.store_grant(account, grant())
    stored = TraktToken.objects.get(pk=token.pk)
    assert stored.access_token == ACCESS
    assert stored.refresh_token == REFRESH
    columns = raw_columns(token.pk)
    assert ACCESS not in "".join(columns) and REFRESH not in "".join(columns)
    # Each an intact envelope around a Fernet token of the configured key.
    fernet = Fernet(settings.TRAKT_TOKEN_KEYS[0])
    assert [fernet.decrypt(opened(column).encode()).decode() for column in columns] == [ACCESS, REFRESH]


def test_token_repr_and_str_hide_tokens(account):
    token = TraktToken.objects.store_grant(account, grant())
    for text in (str(token), repr(token), repr(grant())):
        assert ACCESS not in text and REFRESH not in text


def test_store_grant_replaces_tokens_and_reactivates_link(account):
    token = TraktToken.objects.store_grant(account, grant())
    TraktToken.objects.filter(pk=token.pk).update(status=TraktToken.Status.NEEDS_REAUTH, last_error="invalid_grant")
    TraktToken.objects.store_grant(account, grant("new-access", "new-refresh"))
    token.refresh_from_db()
    assert (token.access_token, token.refresh_token) == ("new-access", "new-refresh")
    assert token.status == TraktToken.Status.ACTIVE and token.last_error == ""
    assert TraktToken.objects.count() == 1


def test_grant_without_refresh_token_keeps_stored_one(account):
    token = TraktToken.objects.store_grant(account, grant())
    TraktToken.objects.store_grant(account, grant("newer-access", ""))
    token.refresh_from_db()
    assert token.refresh_token == REFRESH and token.access_token == "newer-access"


def test_wrong_key_raises_typed_error_and_flags_link_then_heals(account):
    token = TraktToken.objects.store_grant(account, grant())
    other_key = Fernet.generate_key().decode()
    with override_settings(TRAKT_TOKEN_KEYS=[other_key]):
        stored = TraktToken.objects.get(pk=token.pk)  # loading never raises
        with pytest.raises(TokenDecryptionError) as excinfo:
            stored.access_token  # noqa: B018
        assert ACCESS not in str(excinfo.value)
    stored.refresh_from_db()
    assert stored.status == TraktToken.Status.UNREADABLE
    assert "decrypt" in stored.last_error
    # The right key is back: the next read works and clears the flag.
    assert stored.access_token == ACCESS
    stored.refresh_from_db()
    assert stored.status == TraktToken.Status.ACTIVE


def test_keys_rotate_first_encrypts_all_decrypt(account):
    old_key = settings.TRAKT_TOKEN_KEYS[0]
    token = TraktToken.objects.store_grant(account, grant())
    new_key = Fernet.generate_key().decode()
    with override_settings(TRAKT_TOKEN_KEYS=[new_key, old_key]):
        assert TraktToken.objects.get(pk=token.pk).access_token == ACCESS
        reencrypted = crypto.reencrypt(raw_columns(token.pk)[0])
    with override_settings(TRAKT_TOKEN_KEYS=[new_key]):
        assert crypto.decrypt(reencrypted) == ACCESS


@override_settings(TRAKT_TOKEN_KEYS=None, SECRET_KEY="first-secret", SECRET_KEY_FALLBACKS=[])
def test_derived_key_survives_secret_key_rotation_through_fallbacks(account):
    token = TraktToken.objects.store_grant(account, grant())
    with override_settings(SECRET_KEY="second-secret", SECRET_KEY_FALLBACKS=["first-secret"]):
        assert TraktToken.objects.get(pk=token.pk).access_token == ACCESS
    with override_settings(SECRET_KEY="second-secret", SECRET_KEY_FALLBACKS=[]), pytest.raises(TokenDecryptionError):
        TraktToken.objects.get(pk=token.pk).access_token  # noqa: B018


@override_settings(TRAKT_TOKEN_KEYS=["not-a-key"])
def test_malformed_key_at_run_time_is_a_configuration_error_without_the_key():
    with pytest.raises(TraktConfigurationError) as excinfo:
        crypto.encrypt("x")
    assert "TRAKT_TOKEN_KEYS[0]" in str(excinfo.value)
    assert "not-a-key" not in str(excinfo.value)


def test_grant_expiry_is_created_at_plus_expires_in():
    parsed = grant_from_response(
        {
            "access_token": "a",
            "refresh_token": "r",
            "token_type": "Bearer",
            "expires_in": 86400,
            "created_at": 1_700_000_000,
        }
    )
    assert parsed.expires_at == dt.datetime(2023, 11, 15, 22, 13, 20, tzinfo=dt.UTC)
    assert parsed.token_type == "bearer"


def test_grant_without_expiry_is_unknown_expiry():
    parsed = grant_from_response({"access_token": "a", "refresh_token": "r"})
    assert parsed.expires_at is None


@pytest.mark.parametrize("body", [None, [], {"refresh_token": "r"}, {"access_token": ""}, {"access_token": 5}])
def test_grant_from_malformed_answer_is_rejected(body):
    with pytest.raises(TraktMalformedResponse):
        grant_from_response(body)


# -- migration 0006: the ciphertexts stored before the envelope ------------------------------------------

envelope_migration = importlib.import_module("django_trakt.migrations.0006_envelope_token_ciphertext")


def test_migration_wraps_every_stored_ciphertext_without_a_key_and_reverses(account, monkeypatch):
    monkeypatch.setattr(envelope_migration, "BATCH_SIZE", 2)  # several batches
    fernet = Fernet(settings.TRAKT_TOKEN_KEYS[0])
    user = get_user_model().objects.create_user("second", "second@example.com", "pw")
    other = SocialAccount.objects.create(user=user, provider="trakt", uid="uuid-2", extra_data={})
    # As the previous release wrote them: bare Fernet tokens; one link without refresh token.
    bare = {
        account.pk: (fernet.encrypt(ACCESS.encode()).decode(), fernet.encrypt(REFRESH.encode()).decode()),
        other.pk: (fernet.encrypt(b"second-access").decode(), ""),
    }
    for account_id, (access, refresh) in bare.items():
        TraktToken.objects.create(account_id=account_id, access_token_encrypted=access, refresh_token_encrypted=refresh)
    grants = [fernet.encrypt(f"pending-{n}".encode()).decode() for n in range(3)]
    PendingGrant.objects.bulk_create(
        PendingGrant(digest=f"d{n}", access_token_encrypted=grant) for n, grant in enumerate(grants)
    )
    updated_at = dict(TraktToken.objects.values_list("pk", "updated_at"))

    def stored():
        rows = TraktToken.objects.values_list("account_id", "access_token_encrypted", "refresh_token_encrypted")
        grants = PendingGrant.objects.order_by("digest").values_list("access_token_encrypted", flat=True)
        return {account_id: (access, refresh) for account_id, access, refresh in rows}, list(grants)

    with override_settings(TRAKT_TOKEN_KEYS=[Fernet.generate_key().decode()]):  # no key is used
        envelope_migration.wrap_ciphertexts(apps, types.SimpleNamespace(connection=connection))
    tokens, pending = stored()
    assert tokens == {
        account.pk: (envelope(bare[account.pk][0]), envelope(bare[account.pk][1])),
        other.pk: (envelope(bare[other.pk][0]), ""),
    }
    assert pending == [envelope(grant) for grant in grants]
    assert dict(TraktToken.objects.values_list("pk", "updated_at")) == updated_at
    token = TraktToken.objects.get(account=account)
    assert (token.access_token, token.refresh_token) == (ACCESS, REFRESH)
    assert crypto.decrypt(PendingGrant.objects.get(digest="d1").access_token_encrypted) == "pending-1"

    # Run again: nothing changes (every value is already an intact envelope).
    envelope_migration.wrap_ciphertexts(apps, types.SimpleNamespace(connection=connection))
    assert stored() == (tokens, pending)

    envelope_migration.unwrap_ciphertexts(apps, types.SimpleNamespace(connection=connection))
    assert stored() == (bare, grants)


def test_migration_froze_the_envelope_of_this_release():
    # A frozen copy, as migrations should hold: if the format changes, convert older rows
    # with a new migration rather than editing this one.
    for token in ("gAAAAAB-token", "", "any:thing"):
        assert envelope_migration.envelope(token) == crypto.envelope(token) == envelope(token)
    (operation,) = envelope_migration.Migration.operations
    assert operation.reversible
    assert ("django_trakt", "0005_trakttoken_email_unproven") in envelope_migration.Migration.dependencies
