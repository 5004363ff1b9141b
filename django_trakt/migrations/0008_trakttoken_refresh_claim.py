from django.db import migrations, models


class Migration(migrations.Migration):
    # Numbered 0007: 0006 is the ciphertext migration of another branch; at merge this
    # depends on that one instead.
    dependencies = [
        ("django_trakt", "0007_unprovenaccount"),
    ]

    operations = [
        migrations.AddField(
            model_name="trakttoken",
            name="refresh_claimed_by",
            field=models.CharField(blank=True, editable=False, max_length=200, verbose_name="refresh claimed by"),
        ),
        migrations.AddField(
            model_name="trakttoken",
            name="refresh_claimed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="refresh claimed at"),
        ),
        migrations.AddField(
            model_name="trakttoken",
            name="refresh_claim_until",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="refresh claim until"),
        ),
    ]
