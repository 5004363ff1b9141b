"""Views serving Trakt's images from this site (Trakt forbids hotlinking them).

``avatar`` and ``poster`` fetch the image on their first request (never during a page
render), keep it in Django's storage and serve it with ``Cache-Control``, ``ETag`` and
``Last-Modified``: avatars ``private`` (a person's picture, which a shared cache or CDN
must neither hand to others nor keep after the link is removed), posters ``public``
(catalogue art). When there is nothing to serve (no avatar, a refused or failed
fetch, a forged URL) they answer with the default image of the app's static files,
cached briefly, so a later successful fetch shows up. Included with
``django_trakt.site_urls``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import condition, require_safe

from django_trakt.conf import PROVIDER_ID
from django_trakt.internal.pages import images

logger = logging.getLogger(__name__)


def _respond(
    request: HttpRequest,
    content: bytes,
    content_type: str,
    etag: str,
    max_age: int,
    last_modified: int | None,
    *,
    private: bool = False,
) -> HttpResponse:
    modified = dt.datetime.fromtimestamp(last_modified, dt.UTC) if last_modified is not None else None

    # Django's public conditional-GET decorator answers If-None-Match / If-Modified-Since
    # with a 304 and sets ETag and Last-Modified on the full answer.
    @condition(etag_func=lambda request: etag, last_modified_func=lambda request: modified)
    def serve(request: HttpRequest) -> HttpResponse:
        response = HttpResponse(content, content_type=content_type)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    response = serve(request)
    # On the 304 too: a browser revalidates a cached image for as long as this says.
    response["Cache-Control"] = f"{'private' if private else 'public'}, max-age={max_age}"
    return response


#: ``max-age`` of the default image standing in while a task worker (or another request) fetches the real one.
PENDING_MAX_AGE = 10
#: ``max-age`` of a served image: a week, as a fetched image never changes (a new avatar has
#: a new URL, so a new address here) (was the setting TRAKT_IMAGE_MAX_AGE).
IMAGE_MAX_AGE = 7 * 24 * 3600


def default_image_response(request: HttpRequest, kind: str, *, max_age: int | None = None) -> HttpResponse:
    """The default avatar or poster (PNG), cached for ``IMAGE_RETRY_AFTER`` seconds (or ``max_age``).

    ``public`` even for an avatar URL: the shipped default is the same for everyone and
    shows nothing of the person.
    """
    content = images.default_image(kind)
    etag = f'"default-{hashlib.sha256(content).hexdigest()[:16]}"'
    seconds = int(images.IMAGE_RETRY_AFTER) if max_age is None else max_age
    return _respond(request, content, "image/png", etag, seconds, None)


def image_response(request: HttpRequest, source_url: str, kind: str) -> HttpResponse:
    """The stored copy of ``source_url`` (fetched first if missing), else the default image."""
    try:
        image = images.get_image(source_url, kind)
    except Exception:
        logger.exception("Serving a Trakt %s image failed", kind)
        image = None
    if image is None:
        # A worker or another request is fetching it: the browser asks again soon instead of
        # keeping the default.
        pending = images.fetch_queued(source_url) or images.fetch_in_progress(source_url)
        return default_image_response(request, kind, max_age=PENDING_MAX_AGE if pending else None)
    modified = int(image.modified.timestamp()) if image.modified is not None else None
    return _respond(
        request,
        image.content,
        image.content_type,
        f'"{image.digest[:32]}"',
        IMAGE_MAX_AGE,
        modified,
        private=kind == images.AVATAR,
    )


@require_safe
def avatar(request: HttpRequest, account_id: int, key: str) -> HttpResponse:
    """A Trakt account's avatar; ``key`` (from :func:`images.avatar_url`) ties the URL to its source."""
    from allauth.socialaccount.models import SocialAccount

    account: Any = SocialAccount.objects.filter(pk=account_id, provider=PROVIDER_ID).only("pk", "extra_data").first()
    source = images.avatar_source(account) if account is not None else None
    if source is None or not images.avatar_key_matches(account_id, source, key):
        # No such account, no avatar, or a URL made for an older avatar.
        return default_image_response(request, images.AVATAR)
    return image_response(request, source, images.AVATAR)


@require_safe
def poster(request: HttpRequest, token: str) -> HttpResponse:
    """A poster from a watchlist; ``token`` is the signed source URL (see :func:`images.poster_token`)."""
    source = images.poster_source(token)
    if source is None:
        return default_image_response(request, images.POSTER)
    return image_response(request, source, images.POSTER)
