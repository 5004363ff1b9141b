"""Deprecated path, kept until 0.3: import from :mod:`django_trakt.tokens`.

The previous release documented ``django_trakt.links.refresh`` for ``Outcome``,
``RefreshResult``, ``refresh_token``. Import them from :mod:`django_trakt.tokens`: the module
behind this path is internal now (``django_trakt.internal``).
"""

import warnings

from django_trakt.tokens import Outcome, RefreshResult, refresh_token

warnings.warn(
    "django_trakt.links.refresh is deprecated and will be removed in 0.3: "
    "import Outcome, RefreshResult, refresh_token from django_trakt.tokens",
    DeprecationWarning,
    stacklevel=2,  # the importer's line: the import machinery's own frames are skipped
)

__all__ = ["Outcome", "RefreshResult", "refresh_token"]
