"""Deprecated path, kept until 0.3: import from :mod:`django_trakt.redirect_uri`.

The previous release documented ``django_trakt.links.redirect_uri`` for ``trakt_callback_url``,
``trakt_callback_url_for_host``. Import them from :mod:`django_trakt.redirect_uri`: the module
behind this path is internal now (``django_trakt.internal``).
"""

import warnings

from django_trakt.redirect_uri import trakt_callback_url, trakt_callback_url_for_host

warnings.warn(
    "django_trakt.links.redirect_uri is deprecated and will be removed in 0.3: "
    "import trakt_callback_url, trakt_callback_url_for_host from django_trakt.redirect_uri",
    DeprecationWarning,
    stacklevel=2,  # the importer's line: the import machinery's own frames are skipped
)

__all__ = ["trakt_callback_url", "trakt_callback_url_for_host"]
