from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoTraktConfig(AppConfig):
    name = "django_trakt"
    label = "django_trakt"
    verbose_name = _("Trakt")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: registering system checks and receivers, and (tasks)
        # installing the dispatcher that hands work to the site's queue
        # (django_trakt.core.dispatch); without a task backend it hands over nothing.
        from django_trakt import checks, settings_checks, tasks  # noqa: F401
        from django_trakt.links import receivers, revocation, social_tokens, trust  # noqa: F401
        from django_trakt.pages import avatar_housekeeping  # noqa: F401
