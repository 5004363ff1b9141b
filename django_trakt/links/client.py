"""Deprecated path, kept until 0.3: import from :mod:`django_trakt.client`.

The previous release documented ``django_trakt.links.client`` for ``TraktClient``. Import them
from :mod:`django_trakt.client`: the module behind this path is internal now
(``django_trakt.internal``).
"""

import warnings

from django_trakt.client import TraktClient

warnings.warn(
    "django_trakt.links.client is deprecated and will be removed in 0.3: import TraktClient from django_trakt.client",
    DeprecationWarning,
    stacklevel=2,  # the importer's line: the import machinery's own frames are skipped
)

__all__ = ["TraktClient"]
