"""Issue 21: whether an account's links are trusted is a fact about the account
(``UnprovenAccount``), no longer a flag on its signup link (``TraktToken.email_unproven``).

Accounts with such a flagged link become unproven accounts, with the address allauth holds
for them (the primary one first): every link they hold stays untrusted until that address's
owner confirms it or claims the account.
"""

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def accounts_of_flagged_links(apps: Any, schema_editor: Any) -> None:
    TraktToken = apps.get_model("django_trakt", "TraktToken")
    EmailAddress = apps.get_model("account", "EmailAddress")
    UnprovenAccount = apps.get_model("django_trakt", "UnprovenAccount")
    user_ids = set(TraktToken.objects.filter(email_unproven=True).values_list("account__user_id", flat=True))
    for user_id in sorted(user_ids):
        address = EmailAddress.objects.filter(user_id=user_id, verified=False).order_by("-primary", "pk").first()
        if address is not None:
            UnprovenAccount.objects.get_or_create(user_id=user_id, defaults={"email": address.email})


def flags_of_unproven_accounts(apps: Any, schema_editor: Any) -> None:
    TraktToken = apps.get_model("django_trakt", "TraktToken")
    UnprovenAccount = apps.get_model("django_trakt", "UnprovenAccount")
    users = UnprovenAccount.objects.values_list("user_id", flat=True)
    TraktToken.objects.filter(account__user_id__in=list(users)).update(email_unproven=True)


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("account", "0001_initial"),
        ("django_trakt", "0006_envelope_token_ciphertext"),
    ]

    operations = [
        migrations.CreateModel(
            name="UnprovenAccount",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
                ("email", models.EmailField(max_length=254, verbose_name="address typed at signup")),
                (
                    "password_digest",
                    models.CharField(
                        blank=True, editable=False, max_length=64, verbose_name="digest of the unproven password"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created at")),
            ],
            options={
                "verbose_name": "account with an unconfirmed signup address",
                "verbose_name_plural": "accounts with an unconfirmed signup address",
            },
        ),
        migrations.RunPython(accounts_of_flagged_links, flags_of_unproven_accounts),
        migrations.RemoveField(model_name="trakttoken", name="email_unproven"),
    ]
