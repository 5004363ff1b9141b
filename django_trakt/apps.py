from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoTraktConfig(AppConfig):
    name = "django_trakt"
    label = "django_trakt"
    verbose_name = _("Trakt")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_trakt.conf import trakt_settings
        from django_trakt.internal.core import cache

        # core/ sits below the settings: it is told how to read TRAKT_CACHE (at run time, so
        # override_settings and per-environment settings apply), never imports conf.
        cache.read_alias_with(lambda: trakt_settings.CACHE)

        # Imported for their side effects: registering system checks and receivers, and (tasks)
        # installing the dispatcher that hands work to the site's queue
        # (django_trakt.internal.core.dispatch); without a task backend it hands over nothing.
        from django_trakt import checks, tasks  # noqa: F401
        from django_trakt.internal.links import receivers, revocation, social_tokens, trust  # noqa: F401
        from django_trakt.internal.pages import avatar_housekeeping  # noqa: F401
