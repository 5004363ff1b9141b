"""The internal layers of django-trakt: ``core`` < ``api`` < ``links`` < ``pages``.

No compatibility promise: anything here may move or change in any release. A site imports
from the public modules at the top of the package (``django_trakt.client``,
``django_trakt.watchlists``, ``django_trakt.tokens``, ``django_trakt.redirect_uri``, ...;
``tests/test_public_names.py`` lists them), never from ``django_trakt.internal``.
"""
