from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoTraktConfig(AppConfig):
    name = "django_trakt"
    label = "django_trakt"
    verbose_name = _("Trakt")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: registering system checks and receivers.
        from django_trakt import checks, claims, receivers, revocation, settings_checks  # noqa: F401
