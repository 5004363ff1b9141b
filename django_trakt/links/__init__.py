"""Deprecated paths of the previous release, kept until 0.3.

Each module here (``client``, ``batch``, ``refresh``, ``revocation``, ``rotation``,
``redirect_uri``) warns with a ``DeprecationWarning`` and re-exports its names from their public
module. The code that was here lives in ``django_trakt.internal.links``, which is internal:
import from ``django_trakt.client``, ``django_trakt.tokens``, ``django_trakt.redirect_uri`` or
``django_trakt.watchlists``.
"""
