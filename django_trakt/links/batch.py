"""Deprecated path, kept until 0.3: import from :mod:`django_trakt.tokens`.

The previous release documented ``django_trakt.links.batch`` for ``refresh_due_tokens``. Import
them from :mod:`django_trakt.tokens`: the module behind this path is internal now
(``django_trakt.internal``).
"""

import warnings

from django_trakt.tokens import refresh_due_tokens

warnings.warn(
    "django_trakt.links.batch is deprecated and will be removed in 0.3: "
    "import refresh_due_tokens from django_trakt.tokens",
    DeprecationWarning,
    stacklevel=2,  # the importer's line: the import machinery's own frames are skipped
)

__all__ = ["refresh_due_tokens"]
