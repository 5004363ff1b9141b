"""Deprecated path, kept until 0.3: import from :mod:`django_trakt.watchlists`.

The previous release documented ``django_trakt.pages.watchlist`` for ``WatchlistError``,
``WatchlistItem``, ``WatchlistResult``, ``get_watchlist``. Import them from
:mod:`django_trakt.watchlists`: the module behind this path is internal now
(``django_trakt.internal``).
"""

import warnings

from django_trakt.watchlists import WatchlistError, WatchlistItem, WatchlistResult, get_watchlist

warnings.warn(
    "django_trakt.pages.watchlist is deprecated and will be removed in 0.3: "
    "import WatchlistError, WatchlistItem, WatchlistResult, get_watchlist from django_trakt.watchlists",
    DeprecationWarning,
    stacklevel=2,  # the importer's line: the import machinery's own frames are skipped
)

__all__ = ["WatchlistError", "WatchlistItem", "WatchlistResult", "get_watchlist"]
