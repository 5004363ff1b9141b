"""Flags are facts: what a link's status says survives key changes, rotations and reads.

- NEEDS_REAUTH and REVOKED (the user must sign in again) are never overwritten by a
  decryption problem, nor "healed" by a read that works.
- UNREADABLE (no configured key opens the token: put the key back) and CORRUPTED (the
  stored ciphertext is damaged: sign in again) are told apart, with their own advice.
- A decryption flag heals to ACTIVE only when both stored columns decrypt.
"""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from django_trakt.exceptions import TokenDecryptionError
from django_trakt.internal.api.tokens import TokenGrant
from django_trakt.internal.links import crypto
from django_trakt.internal.links.rotation import RotationReport, rotate_keys
from django_trakt.models import TraktToken
from tests.envelopes import digest, envelope, opened

pytestmark = pytest.mark.django_db

Status = TraktToken.Status

OLD = settings.TRAKT_TOKEN_KEYS[0]
NEW = Fernet.generate_key().decode()
LOST = Fernet.generate_key().decode()

WRONG_KEY_ADVICE = "put the key that encrypted it back into TRAKT_TOKEN_KEYS"
CORRUPTED_ADVICE = "the stored ciphertext is damaged; the user must sign in with Trakt again"


def raw(token):
    """(status, last_error, access ciphertext, refresh ciphertext) straight from the table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, last_error, access_token_encrypted, refresh_token_encrypted "
            "FROM django_trakt_trakttoken WHERE id = %s",
            [token.pk],
        )
        return cursor.fetchone()


def status_of(token):
    return raw(token)[0]


def set_row(token, **values):
    TraktToken.objects.filter(pk=token.pk).update(**values)
    return TraktToken.objects.get(pk=token.pk)


def one_character_changed(ciphertext):
    """The ciphertext with one character of its Fernet token changed (the envelope's digest kept)."""
    middle = len(ciphertext) // 2
    replacement = "A" if ciphertext[middle] != "A" else "B"
    changed = ciphertext[:middle] + replacement + ciphertext[middle + 1 :]
    assert opened(ciphertext) and middle > len(digest(""))  # in the token, not the digest
    return changed


def not_text(_ciphertext, key=OLD):
    """An intact envelope of a token ``key`` encrypted that decrypts to bytes that are not
    text: signed by the key, yet nothing the app ever wrote. Only that key shows it is damaged."""
    return envelope(Fernet(key).encrypt(b"\xff\xfe not utf-8"))


def garbage(_ciphertext):
    return "this is not a Fernet token"


DAMAGES = [pytest.param(one_character_changed, id="one-character"), pytest.param(garbage, id="garbage")]


def read_access(token):
    with pytest.raises(TokenDecryptionError) as excinfo:
        token.access_token  # noqa: B018
    return excinfo.value


def rotate_command(*args):
    out = StringIO()
    call_command("rotate_trakt_keys", *args, stdout=out)
    return out.getvalue()


# -- needs re-authorization and revoked survive everything decryption does ---------------------------------


@pytest.mark.parametrize("flag", [Status.NEEDS_REAUTH, Status.REVOKED])
def test_sign_in_flag_survives_rotation_with_a_wrong_key_then_with_the_right_key(linked, flag):
    _user, token = linked()
    token = set_row(token, status=flag, last_error="Trakt rejected the grant: invalid_grant")
    plain = (token.access_token, token.refresh_token)
    before = raw(token)

    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        assert rotate_keys() == RotationReport(unreadable=1)
    assert raw(token) == before  # neither the flag, its reason, nor the ciphertext changed

    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys() == RotationReport(rotated=1)
        assert status_of(token) == flag
        assert raw(token)[1] == "Trakt rejected the grant: invalid_grant"
        token.refresh_from_db()
        assert (token.access_token, token.refresh_token) == plain
        assert (status_of(token), token.status) == (flag, flag)  # reading it does not heal it either


@pytest.mark.parametrize("flag", [Status.NEEDS_REAUTH, Status.REVOKED])
def test_sign_in_flag_survives_reads_with_a_wrong_key_then_with_the_right_key(linked, flag):
    _user, token = linked()
    token = set_row(token, status=flag, last_error="revoked by the user")
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        assert not read_access(token).corrupted
    assert (token.status, raw(token)[:2]) == (flag, (flag, "revoked by the user"))
    token = TraktToken.objects.get(pk=token.pk)
    assert token.access_token and token.refresh_token
    assert (token.status, raw(token)[:2]) == (flag, (flag, "revoked by the user"))


def test_sign_in_flag_survives_a_damaged_column(linked):
    _user, token = linked()
    token = set_row(token, status=Status.NEEDS_REAUTH, access_token_encrypted=garbage(""))
    assert read_access(token).corrupted
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys() == RotationReport(corrupted=1)
    assert status_of(token) == Status.NEEDS_REAUTH


def test_a_flag_set_by_another_process_meanwhile_is_not_overwritten(linked):
    _user, token = linked()
    loaded = TraktToken.objects.get(pk=token.pk)  # ACTIVE in memory
    # Meanwhile Trakt rejected the refresh token in another process.
    set_row(token, status=Status.NEEDS_REAUTH, last_error="invalid_grant")
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        read_access(loaded)
    assert raw(token)[:2] == (Status.NEEDS_REAUTH, "invalid_grant")
    assert (loaded.status, loaded.last_error) == (Status.NEEDS_REAUTH, "invalid_grant")


def test_signing_in_again_clears_a_corrupted_link(linked):
    _user, token = linked()
    token = set_row(token, access_token_encrypted=garbage(""))
    read_access(token)
    assert status_of(token) == Status.CORRUPTED
    TraktToken.objects.store_grant(token.account, TokenGrant("new-access", "new-refresh", "bearer", "public", None))
    token.refresh_from_db()
    assert (token.status, token.last_error, token.access_token) == (Status.ACTIVE, "", "new-access")


# -- a damaged ciphertext with the right key: CORRUPTED, and it stays so ----------------------------------


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_access_token_with_the_right_key_is_corrupted_and_stays_corrupted(linked, damage):
    _user, token = linked()
    refresh = token.refresh_token
    token = set_row(token, access_token_encrypted=damage(token.access_token_encrypted))
    columns = raw(token)[2:]

    err = read_access(token)
    assert err.corrupted and err.reason == TokenDecryptionError.CORRUPTED
    assert CORRUPTED_ADVICE in str(err) and "TRAKT_TOKEN_KEYS" not in str(err)
    assert status_of(token) == token.status == Status.CORRUPTED
    assert "sign in with Trakt again" in token.last_error and "TRAKT_TOKEN_KEYS" not in token.last_error

    # Reading the intact column works, but says nothing about the damaged one.
    fresh = TraktToken.objects.get(pk=token.pk)
    assert fresh.refresh_token == refresh
    assert status_of(token) == fresh.status == Status.CORRUPTED

    # A rotation counts it apart from the unreadable ones and leaves it as it is.
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        report = rotate_keys()
        assert report == RotationReport(corrupted=1) and report.total == 1
        assert raw(token)[:3] == (Status.CORRUPTED, token.last_error, columns[0])
        assert raw(token)[3] == columns[1]

        # And the accessor, read again, still refuses it.
        again = TraktToken.objects.get(pk=token.pk)
        assert read_access(again).corrupted
        assert again.refresh_token == refresh
        assert status_of(token) == Status.CORRUPTED


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_refresh_token_is_corrupted_too(linked, damage):
    _user, token = linked()
    access = token.access_token
    token = set_row(token, refresh_token_encrypted=damage(token.refresh_token_encrypted))
    assert token.access_token == access  # an active link is not checked on every read
    with pytest.raises(TokenDecryptionError) as excinfo:
        token.refresh_token  # noqa: B018
    assert excinfo.value.corrupted
    assert status_of(token) == Status.CORRUPTED
    assert token.access_token == access
    assert status_of(token) == Status.CORRUPTED


def test_rotation_flags_a_damaged_row_corrupted_and_rotates_the_others(linked):
    _user, damaged = linked()
    _user, intact = linked()
    damaged = set_row(damaged, access_token_encrypted=one_character_changed(damaged.access_token_encrypted))
    before = raw(damaged)
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys(dry_run=True) == RotationReport(rotated=1, corrupted=1)
        assert raw(damaged) == before  # a dry run flags nothing
        assert rotate_keys(batch_size=1) == RotationReport(rotated=1, corrupted=1)
    after = raw(damaged)
    assert after[0] == Status.CORRUPTED and "sign in with Trakt again" in after[1]
    assert after[2:] == before[2:]
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert TraktToken.objects.get(pk=intact.pk).access_token


def test_a_wrong_key_does_not_turn_a_corrupted_link_back_into_an_unreadable_one(linked):
    _user, token = linked()
    # Damage only the right key can see (one changed character shows under any key now).
    token = set_row(token, access_token_encrypted=not_text(token.access_token_encrypted))
    read_access(token)
    flagged = raw(token)[:2]
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        # Nothing decrypts now, so this read cannot tell damage from a wrong key...
        assert not read_access(TraktToken.objects.get(pk=token.pk)).corrupted
        assert rotate_keys() == RotationReport(unreadable=1)
    # ...and it does not undo what the right key showed.
    assert raw(token)[:2] == flagged


def test_rotate_command_reports_corrupted_tokens_apart(linked):
    _user, token = linked()
    linked()
    set_row(token, access_token_encrypted=garbage(""))
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        output = rotate_command()  # exit 0: no key would help, none has to stay
    assert "Re-encrypted 1 token(s) with the first key; 0 already current; 0 unreadable." in output
    assert "1 token(s) are corrupted (the stored ciphertext is damaged)" in output
    assert "sign in with Trakt again" in output
    assert "Every other stored token now decrypts with the first key" in output


# -- a wrong key: UNREADABLE, healed once the key is back and both columns decrypt ------------------------


def test_wrong_key_is_unreadable_and_heals_once_the_right_key_is_back(linked):
    _user, token = linked()
    plain = (token.access_token, token.refresh_token)
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        stored = TraktToken.objects.get(pk=token.pk)
        err = read_access(stored)
        assert err.reason == TokenDecryptionError.WRONG_KEY and not err.corrupted
        assert WRONG_KEY_ADVICE in str(err) and "damaged" not in str(err)
        assert status_of(token) == Status.UNREADABLE
        assert "TRAKT_TOKEN_KEYS" in stored.last_error and "sign in" not in stored.last_error
        with pytest.raises(TokenDecryptionError):
            stored.refresh_token  # noqa: B018
        assert status_of(token) == Status.UNREADABLE
    assert (stored.access_token, stored.refresh_token) == plain
    assert raw(token)[:2] == (Status.ACTIVE, "") == (stored.status, stored.last_error)


def test_unreadable_heals_only_when_both_columns_decrypt(linked):
    _user, token = linked()
    access = token.access_token
    # Flagged by an earlier wrong key; since then the refresh column has been damaged.
    token = set_row(
        token,
        status=Status.UNREADABLE,
        last_error="old",
        refresh_token_encrypted=garbage(token.refresh_token_encrypted),
    )
    assert token.access_token == access
    assert status_of(token) == token.status == Status.CORRUPTED


def test_columns_under_different_keys_heal_only_once_both_keys_are_there(linked):
    _user, token = linked()
    # A grant without a refresh token keeps the stored one: after a key change the two
    # columns can be under different keys.
    with override_settings(TRAKT_TOKEN_KEYS=[LOST, OLD]):
        token.apply_grant(TokenGrant("access-under-lost", "", "bearer", "public", None))
        token.save()
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        read_access(token)
        assert status_of(token) == Status.UNREADABLE
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        # One column decrypts, the other fails: from here that looks like damage.
        assert token.access_token == "access-under-lost"
        assert status_of(token) == Status.CORRUPTED
    with override_settings(TRAKT_TOKEN_KEYS=[LOST, OLD]):
        assert token.access_token == "access-under-lost"
        assert status_of(token) == token.status == Status.ACTIVE and token.last_error == ""


def test_rotation_heals_only_rows_whose_both_columns_decrypt(linked):
    _user, healed = linked()
    _user, damaged = linked()
    healed = set_row(healed, status=Status.UNREADABLE, last_error="old")
    damaged = set_row(damaged, status=Status.UNREADABLE, last_error="old", refresh_token_encrypted=garbage(""))
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        assert rotate_keys() == RotationReport(rotated=1, corrupted=1)
    assert raw(healed)[:2] == (Status.ACTIVE, "")
    assert status_of(damaged) == Status.CORRUPTED


# -- the errors never hold a token or a key ---------------------------------------------------------------


@pytest.mark.parametrize("damage", [None, *DAMAGES])
def test_decryption_errors_hold_no_token_nor_key(linked, damage):
    _user, token = linked()
    plain = (token.access_token, token.refresh_token)
    if damage is not None:
        token = set_row(token, access_token_encrypted=damage(token.access_token_encrypted))
        keys = [OLD]
    else:
        keys = [LOST]
    secrets = [*plain, *raw(token)[2:], OLD, LOST]
    with override_settings(TRAKT_TOKEN_KEYS=keys):
        err = read_access(TraktToken.objects.get(pk=token.pk))
    chain = [err]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    for exc in chain:
        for text in (str(exc), repr(exc)):
            for secret in secrets:
                assert secret not in text
    stored = TraktToken.objects.get(pk=token.pk)
    for secret in secrets:
        assert secret not in stored.last_error and secret not in str(stored) and secret not in repr(stored)


def test_decryption_error_keeps_its_reason_and_defaults_to_a_wrong_key():
    assert TokenDecryptionError("x").reason == TokenDecryptionError.WRONG_KEY
    # Copied or pickled (a task queue), the reason goes along.
    copied = copy.copy(crypto.decryption_error(TokenDecryptionError.CORRUPTED))
    assert copied.corrupted and CORRUPTED_ADVICE in str(copied)


# -- crypto: why a ciphertext does not decrypt --------------------------------------------------------------
# Built with cryptography's public API and the envelope's documented format only: the tests,
# like the app, never take a Fernet token apart.


@pytest.fixture
def valid():
    return crypto.encrypt("a plain token")


def in_token(change):
    """A damage to the Fernet token inside an envelope, the envelope's digest kept."""

    def damage(stored):
        stored_digest, _separator, token = stored.partition(":")
        return f"{stored_digest}:{change(token)}"

    return damage


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda stored: "", id="empty"),
        pytest.param(lambda stored: "not base64 at all!", id="not-base64"),
        pytest.param(in_token(lambda t: t[:10] + ("/" if t[10] == "-" else "+") + t[11:]), id="not-url-safe"),
        # cryptography 51 decrypts this token (42, 46 and 50 refuse it): the digest decides.
        pytest.param(lambda stored: stored[:-1], id="bad-padding"),
        pytest.param(lambda stored: stored + "é", id="not-ascii"),
        pytest.param(in_token(lambda t: t[:60]), id="token-cut-short"),
        pytest.param(one_character_changed, id="one-character"),
        pytest.param(lambda stored: ("B" if stored[0] == "A" else "A") + stored[1:], id="digest-changed"),
        pytest.param(lambda stored: ":" + opened(stored), id="digest-missing"),
        pytest.param(lambda stored: stored.replace(":", "", 1), id="separator-lost"),
        pytest.param(lambda stored: stored.partition(":")[0] + ":" + opened(crypto.encrypt("other")), id="swapped"),
        pytest.param(not_text, id="signed-but-not-text"),
        pytest.param(lambda stored: opened(not_text(stored)), id="signed-but-not-text-without-envelope"),
    ],
)
def test_malformed_ciphertext_is_corrupted(valid, broken):
    ciphertext = broken(valid)
    assert ciphertext != valid
    assert crypto.failure_reason(ciphertext) == TokenDecryptionError.CORRUPTED
    with pytest.raises(TokenDecryptionError) as excinfo:
        crypto.decrypt(ciphertext)
    assert excinfo.value.corrupted and CORRUPTED_ADVICE in str(excinfo.value)
    with pytest.raises(TokenDecryptionError) as excinfo:
        crypto.reencrypt(ciphertext)
    assert excinfo.value.corrupted
    assert not crypto.is_current(ciphertext)


def test_intact_ciphertext_no_key_signed_is_a_wrong_key(valid):
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, LOST]):
        assert crypto.failure_reason(valid) == TokenDecryptionError.WRONG_KEY
        with pytest.raises(TokenDecryptionError) as excinfo:
            crypto.decrypt(valid)
        assert not excinfo.value.corrupted and WRONG_KEY_ADVICE in str(excinfo.value)
        with pytest.raises(TokenDecryptionError) as excinfo:
            crypto.reencrypt(valid)
        assert not excinfo.value.corrupted
        # Signed by a key that is not configured: no key here can tell it is damaged.
        assert crypto.failure_reason(not_text(valid)) == TokenDecryptionError.WRONG_KEY
        # One character changed breaks the envelope's digest: damage, whatever the keys
        # (before the envelope it looked like a wrong key).
        assert crypto.failure_reason(one_character_changed(valid)) == TokenDecryptionError.CORRUPTED


def test_tokens_stored_before_the_envelope_still_decrypt_and_rotate_into_it():
    bare = Fernet(OLD).encrypt(b"a plain token").decode()
    assert crypto.decrypt(bare) == "a plain token"
    assert not crypto.is_current(bare)  # rotation rewrites it in the envelope
    with override_settings(TRAKT_TOKEN_KEYS=[NEW, OLD]):
        rotated = crypto.reencrypt(bare)
    assert Fernet(NEW).decrypt(opened(rotated).encode()) == b"a plain token"
    with override_settings(TRAKT_TOKEN_KEYS=[NEW]):
        assert crypto.is_current(rotated) and crypto.decrypt(rotated) == "a plain token"
        # Without an envelope nothing tells an unknown key's token from garbage: damaged.
        assert crypto.failure_reason(bare) == TokenDecryptionError.CORRUPTED


def test_sealed_values_are_envelopes_behind_the_prefix(valid):
    sealed = crypto.seal("a plain token")
    assert sealed.startswith(crypto.SEALED_PREFIX) and "a plain token" not in sealed
    assert Fernet(OLD).decrypt(opened(sealed.removeprefix(crypto.SEALED_PREFIX)).encode()) == b"a plain token"
    assert crypto.unseal(sealed) == "a plain token"
    # Sealed before the envelope (a session of a sign-in in progress at the upgrade).
    assert crypto.unseal(crypto.SEALED_PREFIX + opened(valid)) == "a plain token"
    with pytest.raises(TokenDecryptionError) as excinfo:
        crypto.unseal(sealed[:-1])
    assert excinfo.value.corrupted


# -- the admin: the new status is shown, filtered, and explained -----------------------------------------


def test_admin_shows_filters_and_explains_corrupted_and_unreadable_apart(admin_client, linked):
    _user, corrupted = linked("TraktDamaged")
    _user, unreadable = linked("TraktLocked")
    linked("TraktFine")
    set_row(corrupted, access_token_encrypted=garbage(""))
    read_access(TraktToken.objects.get(pk=corrupted.pk))
    with override_settings(TRAKT_TOKEN_KEYS=[LOST]):
        read_access(TraktToken.objects.get(pk=unreadable.pk))

    changelist = reverse("admin:django_trakt_trakttoken_changelist")
    html = admin_client.get(changelist).content.decode()
    assert "Corrupted (stored ciphertext is damaged)" in html and "Unreadable (wrong encryption key)" in html
    assert "?status__exact=corrupted" in html  # offered by the status filter

    filtered = admin_client.get(changelist, {"status__exact": "corrupted"})
    assert filtered.context["cl"].result_count == 1
    assert "TraktDamaged" in filtered.content.decode() and "TraktLocked" not in filtered.content.decode()
    assert admin_client.get(changelist, {"status__exact": "unreadable"}).context["cl"].result_count == 1

    damaged_page = admin_client.get(reverse("admin:django_trakt_trakttoken_change", args=[corrupted.pk]))
    locked_page = admin_client.get(reverse("admin:django_trakt_trakttoken_change", args=[unreadable.pk]))
    damaged_html, locked_html = damaged_page.content.decode(), locked_page.content.decode()
    assert "no key can bring it back" in damaged_html and "sign in with Trakt again" in damaged_html
    assert "Put the key that encrypted it back into TRAKT_TOKEN_KEYS" in locked_html
    assert "no key can bring it back" not in locked_html
    assert "gAAAA" not in damaged_html + locked_html
