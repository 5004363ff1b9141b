"""The redirect URI ("callback URL") this site sends to Trakt, built by allauth itself.

Trakt redirects only to a URI registered exactly, so the one to register is the one
allauth puts into the authorize redirect: the provider adapter's
``get_callback_url()``, i.e. ``allauth.utils.build_absolute_uri`` on the
``trakt_callback`` URL. It takes the host and scheme from the request (behind a proxy:
``SECURE_PROXY_SSL_HEADER``), and forces ``https`` when
``ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"``. Everything here goes through that one
method, so the management command, the system check and a site's own pages can never
disagree with what the login sends.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.http.request import split_domain_port

from django_trakt.views import TraktOAuth2Adapter


class SiteRequest(HttpRequest):
    """A stand-in for a request that reaches the site at ``host`` over HTTP or HTTPS.

    It carries what URL building reads: the ``Host`` header and the scheme. Like a
    real request, ``get_host()`` refuses a host that is not in ``ALLOWED_HOSTS``
    (``DisallowedHost``), unless ``validate_host`` is false.
    """

    def __init__(self, host: str, *, secure: bool = False, validate_host: bool = True) -> None:
        super().__init__()
        domain, port = split_domain_port(host)
        self.META = {
            "HTTP_HOST": host,
            "SERVER_NAME": domain or host,
            "SERVER_PORT": port or ("443" if secure else "80"),
        }
        self._secure = secure
        self._validate_host = validate_host

    def _get_scheme(self) -> str:
        return "https" if self._secure else "http"

    def get_host(self) -> str:
        if self._validate_host:
            return super().get_host()
        return self.META["HTTP_HOST"]


def trakt_callback_url(request: HttpRequest | None = None) -> str:
    """The redirect URI allauth sends to Trakt when the login starts from ``request``.

    With ``request=None`` allauth builds it from the sites framework (the current
    ``Site``'s domain and ``ACCOUNT_DEFAULT_HTTP_PROTOCOL``) and raises
    ``ImproperlyConfigured`` when the sites framework is not installed.
    """
    adapter = TraktOAuth2Adapter(request)
    # allauth's OAuth2Adapter.get_callback_url does not use the app.
    return str(adapter.get_callback_url(request, None))


def trakt_callback_url_for_host(host: str, *, secure: bool = False, validate_host: bool = True) -> str:
    """The redirect URI for a login started at ``host`` (``"example.com"``, ``"nas.local:8000"``).

    ``secure`` says whether that request reaches Django over HTTPS (directly, or as
    recognised through ``SECURE_PROXY_SSL_HEADER``).
    """
    return trakt_callback_url(SiteRequest(host, secure=secure, validate_host=validate_host))
