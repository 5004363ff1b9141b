"""What a Trakt link leaves behind: its stored avatar goes with it, avatars are served
``private``, and ``extra_data`` keeps only the allowed profile fields (migration 0003
trims the rows written before)."""

from __future__ import annotations

import copy
import importlib
import logging
import types

import pytest
from allauth.socialaccount.models import SocialAccount
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse

from django_trakt.internal.links import revocation
from django_trakt.internal.links.profile import EXTRA_DATA_FIELDS, trim_extra_data
from django_trakt.internal.pages import image_views, images
from django_trakt.models import TraktToken
from django_trakt.testing.documents import settings_document
from django_trakt.testing.images import avatar_png, poster_png
from tests.conftest import link_user

pytestmark = pytest.mark.django_db

User = get_user_model()
migration = importlib.import_module("django_trakt.migrations.0003_trim_trakt_extra_data")

#: Exactly what extra_data may hold after a sign-in (the emulator sends every one of them):
#: its keys, with None for a plain value.
ALLOWED = {
    "user": {
        "username": None,
        "name": None,
        "private": None,
        "vip": None,
        "vip_ep": None,
        "joined_at": None,
        "ids": {"slug": None, "uuid": None, "trakt": None},
        "images": {"avatar": {"full": None}},
    }
}


def shape(data):
    """The keys of nested dicts, as in :data:`ALLOWED`."""
    return {key: shape(value) if isinstance(value, dict) else None for key, value in data.items()}


@pytest.fixture(autouse=True)
def image_settings(settings, tmp_path):
    """Images stored under a temporary MEDIA_ROOT; the emulator's host allowed; every host public."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAKT_IMAGE_HOSTS = [".trakt.test", "trakt.test"]
    settings.TRAKT_IMAGE_RESOLVER = lambda host: ["93.184.216.34"]
    return settings


def avatar_name(source: str) -> str:
    return images.storage_name(source, images.AVATAR)


def stored(name: str) -> bool:
    return storages["default"].exists(name)


def is_default_avatar(response) -> bool:
    return response.status_code == 200 and response.content == images.default_image(images.AVATAR)


def linked_with_avatar(trakt, client, username: str, source: str | None = None):
    """A linked user whose avatar was served once, so it is in the storage."""
    user, token = link_user(trakt, username)
    account = token.account
    source = source or f"https://trakt.test/images/avatars/{username}.png"
    account.extra_data["user"]["images"] = {"avatar": {"full": source}}
    account.save()
    path = images.avatar_url(account)
    served = client.get(path)
    # The local Trakt draws an avatar per file name.
    assert served.status_code == 200 and served.content == avatar_png(source.rsplit("/", 1)[-1].removesuffix(".png"))
    assert stored(avatar_name(source))
    return user, token, source, path


def start(client, **data):
    response = client.post(reverse("trakt_login"), data)
    assert response.status_code == 302
    return response["Location"]


def sign_in(client, trakt, username=None, **data):
    return client.get(trakt.authorize(start(client, **data), username=username))


# -- 1. unlinking deletes the stored avatar -------------------------------------------------------------


def _connections_page(client, admin_client, user, token):
    client.force_login(user)
    response = client.post(reverse("socialaccount_connections"), {"account": token.account_id})
    assert response.status_code == 302


def _account_delete(client, admin_client, user, token):
    SocialAccount.objects.get(pk=token.account_id).delete()


def _queryset_delete(client, admin_client, user, token):
    SocialAccount.objects.filter(user=user, provider="trakt").delete()


def _user_delete(client, admin_client, user, token):
    User.objects.get(pk=user.pk).delete()


def _unlink(client, admin_client, user, token):
    assert revocation.unlink(SocialAccount.objects.get(pk=token.account_id)) is True


def _admin_delete(client, admin_client, user, token):
    url = reverse("admin:socialaccount_socialaccount_delete", args=[token.account_id])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302


def _admin_action(client, admin_client, user, token):
    data = {"action": "revoke_and_unlink", "_selected_action": [token.pk], "post": "yes"}
    response = admin_client.post(reverse("admin:django_trakt_trakttoken_changelist"), data, follow=True)
    assert response.status_code == 200


UNLINK_PATHS = {
    "connections-page": _connections_page,
    "account-delete": _account_delete,
    "queryset-delete": _queryset_delete,
    "user-delete": _user_delete,
    "revocation-unlink": _unlink,
    "admin-delete": _admin_delete,
    "admin-action": _admin_action,
}


@pytest.mark.parametrize("remove", UNLINK_PATHS.values(), ids=UNLINK_PATHS.keys())
def test_every_way_of_unlinking_deletes_the_stored_avatar(
    web, client, admin_client, remove, django_capture_on_commit_callbacks
):
    trakt, _rsps = web
    user, token, source, path = linked_with_avatar(trakt, client, "leaver")
    with django_capture_on_commit_callbacks(execute=True):
        remove(client, admin_client, user, token)
    assert not SocialAccount.objects.filter(pk=token.account_id).exists()
    assert not stored(avatar_name(source))
    assert is_default_avatar(client.get(path))
    assert len(trakt.requests_to("/oauth/revoke")) == 1  # the revoke is unchanged: once


def test_avatar_is_deleted_after_the_commit_and_kept_on_rollback(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    _user, token, source, _path = linked_with_avatar(trakt, client, "careful")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                SocialAccount.objects.get(pk=token.account_id).delete()
                raise RuntimeError("the request failed after the delete")
        except RuntimeError:
            pass
    assert callbacks == [] and stored(avatar_name(source))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        SocialAccount.objects.get(pk=token.account_id).delete()
        assert stored(avatar_name(source))  # not inside the transaction
    for callback in callbacks:
        callback()
    assert not stored(avatar_name(source))


def test_failed_delete_is_logged_and_never_blocks_the_unlink(
    web, client, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO)
    trakt, _rsps = web
    _user, token, source, _path = linked_with_avatar(trakt, client, "sticky")

    def broken(self, name):
        raise OSError("storage down")

    monkeypatch.setattr(FileSystemStorage, "delete", broken)
    with django_capture_on_commit_callbacks(execute=True):
        assert revocation.unlink(SocialAccount.objects.get(pk=token.account_id)) is True
    assert not SocialAccount.objects.filter(pk=token.account_id).exists()
    assert not TraktToken.objects.filter(pk=token.pk).exists()
    assert f"Deleting the stored Trakt image {avatar_name(source)} failed" in caplog.text


def test_unexpected_error_while_forgetting_is_logged_not_raised(
    web, client, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    trakt, _rsps = web
    user, token, _source, _path = linked_with_avatar(trakt, client, "oddity")

    def broken(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(images, "delete_stored", broken)
    with django_capture_on_commit_callbacks(execute=True):
        _connections_page(client, None, user, token)
    assert not SocialAccount.objects.filter(pk=token.account_id).exists()
    assert f"Deleting the stored avatar of Trakt account {token.account_id} failed" in caplog.text


def test_an_avatar_another_account_still_shows_is_kept(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    shared = "https://trakt.test/images/avatars/placeholder.png"
    _first, first_token, _source, _path = linked_with_avatar(trakt, client, "first", shared)
    second, second_token, _source, second_path = linked_with_avatar(trakt, client, "second", shared)
    # The other account names it without a scheme, as Trakt's API sometimes does: the same file.
    SocialAccount.objects.filter(pk=second_token.account_id).update(
        extra_data={
            "user": {"username": "second", "images": {"avatar": {"full": "trakt.test/images/avatars/placeholder.png"}}}
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        SocialAccount.objects.get(pk=first_token.account_id).delete()
    assert stored(avatar_name(shared))
    with django_capture_on_commit_callbacks(execute=True):
        second.delete()
    assert not stored(avatar_name(shared))
    assert is_default_avatar(client.get(second_path))


def test_posters_are_shared_catalogue_art_and_stay(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    _user, token, _source, _path = linked_with_avatar(trakt, client, "cinephile")
    poster = "https://trakt.test/images/posters/movie-1.png"
    served = client.get(reverse("django_trakt:poster", args=[images.poster_token(poster)]))
    assert served.content == poster_png("movie-1")
    with django_capture_on_commit_callbacks(execute=True):
        SocialAccount.objects.get(pk=token.account_id).delete()
    assert stored(images.storage_name(poster, images.POSTER))


def test_other_providers_images_are_left_alone(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    _user, _token, source, _path = linked_with_avatar(trakt, client, "twin")
    other = User.objects.create_user("gh", "gh@example.com", "pw")
    account = SocialAccount.objects.create(
        user=other, provider="github", uid="7", extra_data={"user": {"images": {"avatar": {"full": source}}}}
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        account.delete()
    assert callbacks == [] and stored(avatar_name(source))


def test_a_new_avatar_at_sign_in_deletes_the_previous_one(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    user, token, old, old_path = linked_with_avatar(
        trakt, client, "refresher", "https://trakt.test/images/avatars/refresher-2019.png"
    )
    client.logout()
    with django_capture_on_commit_callbacks(execute=True):
        response = sign_in(client, trakt, username="refresher")
    assert response.status_code == 302 and response.wsgi_request.user == user
    account = SocialAccount.objects.get(pk=token.account_id)
    assert images.avatar_source(account) == "https://trakt.test/images/avatars/refresher.png"
    assert not stored(avatar_name(old))
    assert is_default_avatar(client.get(old_path))
    assert client.get(images.avatar_url(account)).content == avatar_png("refresher")


def test_an_unchanged_avatar_and_other_saves_keep_the_file(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    _user, token, source, _path = linked_with_avatar(trakt, client, "steady")
    account = SocialAccount.objects.get(pk=token.account_id)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        account.extra_data["user"]["name"] = "Steady Eddie"
        account.save()
        account.save(update_fields=["last_login"])
    assert callbacks == [] and stored(avatar_name(source))


# -- 2. avatars are private ---------------------------------------------------------------------------


def test_avatars_are_served_private_posters_public(web, client, settings, monkeypatch):
    monkeypatch.setattr(image_views, "IMAGE_MAX_AGE", 4321)
    trakt, _rsps = web
    _user, _token, _source, path = linked_with_avatar(trakt, client, "shy")  # the first answer fetched it
    again = client.get(path)  # from the storage
    assert again.content == avatar_png("shy")
    assert again["Cache-Control"] == "private, max-age=4321"
    not_modified = client.get(path, HTTP_IF_NONE_MATCH=again["ETag"])
    assert not_modified.status_code == 304 and not_modified["Cache-Control"] == "private, max-age=4321"

    poster = client.get(
        reverse("django_trakt:poster", args=[images.poster_token("https://trakt.test/images/posters/p.png")])
    )
    assert poster.content == poster_png("p") and poster["Cache-Control"] == "public, max-age=4321"


def test_first_fetch_of_an_avatar_is_private_too(web, client):
    trakt, _rsps = web
    _user, token = link_user(trakt, "fresh")
    account = token.account
    account.extra_data["user"]["images"] = {"avatar": {"full": "https://trakt.test/images/avatars/fresh.png"}}
    account.save()
    first = client.get(images.avatar_url(account))
    assert first.content == avatar_png("fresh") and first["Cache-Control"].startswith("private, ")


def test_the_default_avatar_is_the_same_for_everyone_and_stays_public(web, client, settings, monkeypatch):
    monkeypatch.setattr(images, "IMAGE_RETRY_AFTER", 60)
    response = client.get(reverse("django_trakt:avatar", args=[999, "0" * 24]))
    assert is_default_avatar(response) and response["Cache-Control"] == "public, max-age=60"


# -- 3. extra_data keeps only the allow-list ---------------------------------------------------------------


def test_sign_up_stores_only_the_allowed_profile_fields(client, trakt):
    trakt.get_user("Watcher").location = "Springfield"
    response = sign_in(client, trakt)
    assert response["Location"] == reverse("socialaccount_signup")
    page = client.get(reverse("socialaccount_signup"))
    assert page.context["form"].initial["username"] == "Watcher"
    done = client.post(reverse("socialaccount_signup"), {"email": "wanda@example.com", "username": "Watcher"})
    assert done.status_code == 302

    account = SocialAccount.objects.get()
    assert shape(account.extra_data) == ALLOWED
    user = trakt.get_user("Watcher")
    assert account.extra_data["user"]["username"] == "Watcher" and account.extra_data["user"]["name"] == "Wanda Watcher"
    assert account.extra_data["user"]["ids"] == {"slug": user.slug, "uuid": user.uuid, "trakt": user.trakt_id}
    assert "Springfield" not in str(account.extra_data)
    # What the app reads from it still works.
    assert str(account.get_provider_account()) == "Watcher"
    assert account.get_profile_url() == f"https://trakt.test/users/{user.slug}"
    assert account.get_avatar_url() == images.avatar_url(account)


def test_returning_user_sign_in_trims_an_old_full_profile(client, trakt):
    user, token = link_user(trakt, "veteran")
    full = settings_document(trakt.get_user("veteran"), trakt.image_url)
    SocialAccount.objects.filter(pk=token.account_id).update(extra_data=full)
    response = sign_in(client, trakt, username="veteran")
    assert response.status_code == 302 and response.wsgi_request.user == user
    extra = SocialAccount.objects.get(pk=token.account_id).extra_data
    assert shape(extra) == ALLOWED
    assert "account" not in extra and "limits" not in extra and "connections" not in extra


def test_trim_keeps_the_allow_list_and_only_plain_values(trakt):
    document = settings_document(trakt.get_user("Watcher"), trakt.image_url)
    trimmed = trim_extra_data(document)
    assert shape(trimmed) == ALLOWED
    for path in EXTRA_DATA_FIELDS:
        value, source = trimmed, document
        for key in path:
            value, source = value[key], source[key]
        assert value == source
    # Something unexpected where a plain value belongs is dropped, not kept with its contents.
    odd = copy.deepcopy(document)
    odd["user"]["name"] = {"first": "Wanda", "secret": "x"}
    odd["user"]["ids"] = "not a dict"
    assert "name" not in trim_extra_data(odd)["user"] and "ids" not in trim_extra_data(odd)["user"]
    assert trim_extra_data(None) == {} and trim_extra_data(["user"]) == {} and trim_extra_data({}) == {}
    assert trim_extra_data({"user": {"username": "x", "about": "y"}}) == {"user": {"username": "x"}}


# -- the migration ----------------------------------------------------------------------------------------


def test_migration_trims_existing_trakt_rows_and_leaves_other_providers(trakt, monkeypatch):
    monkeypatch.setattr(migration, "BATCH_SIZE", 2)  # several batches
    document = settings_document(trakt.get_user("Watcher"), trakt.image_url)
    owners = [User.objects.create_user(f"owner{index}", f"o{index}@example.com", "pw") for index in range(5)]
    trakt_rows = [
        SocialAccount.objects.create(user=owners[0], provider="trakt", uid="full", extra_data=document),
        SocialAccount.objects.create(
            user=owners[1], provider="trakt", uid="odd", extra_data={"user": {"username": "odd", "gender": "x"}, "x": 1}
        ),
        SocialAccount.objects.create(user=owners[2], provider="trakt", uid="empty", extra_data={}),
        SocialAccount.objects.create(user=owners[3], provider="trakt", uid="list", extra_data=["not", "a", "dict"]),
    ]
    github = SocialAccount.objects.create(
        user=owners[4], provider="github", uid="42", extra_data={"login": "gh", "bio": "b"}
    )

    migration.trim_trakt_extra_data(apps, types.SimpleNamespace(connection=connection))

    full, odd, empty, listed = (SocialAccount.objects.get(pk=row.pk).extra_data for row in trakt_rows)
    assert full == trim_extra_data(document) and shape(full) == ALLOWED
    assert odd == {"user": {"username": "odd"}} and empty == {} and listed == {}
    assert SocialAccount.objects.get(pk=github.pk).extra_data == {"login": "gh", "bio": "b"}
    # Running it again changes nothing.
    migration.trim_trakt_extra_data(apps, types.SimpleNamespace(connection=connection))
    assert SocialAccount.objects.get(pk=trakt_rows[0].pk).extra_data == full


def test_migration_keeps_stored_avatars_and_is_a_reversible_no_op(web, client, django_capture_on_commit_callbacks):
    trakt, _rsps = web
    _user, token, source, _path = linked_with_avatar(trakt, client, "kept")
    with django_capture_on_commit_callbacks(execute=True):
        migration.trim_trakt_extra_data(apps, types.SimpleNamespace(connection=connection))
    assert images.avatar_source(SocialAccount.objects.get(pk=token.account_id)) == source
    assert stored(avatar_name(source))
    (operation,) = migration.Migration.operations
    assert operation.reversible and operation.reverse_code is operation.noop
    assert ("socialaccount", "0006_alter_socialaccount_extra_data") in migration.Migration.dependencies
    assert ("django_trakt", "0002_alter_trakttoken_status") in migration.Migration.dependencies


def test_migration_froze_the_allow_list_of_this_release():
    # A frozen copy, as migrations should hold: if the provider's list changes, trim older
    # rows with a new migration rather than editing this one.
    assert migration.FIELDS == EXTRA_DATA_FIELDS


def test_no_migration_is_missing():
    call_command("makemigrations", "django_trakt", check=True, dry_run=True, verbosity=0)
