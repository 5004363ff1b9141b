"""``{% load trakt %}``: the signed-in user's Trakt avatar and watchlists on a page.

Thin tags over :mod:`django_trakt.internal.pages.watchlist` and :mod:`django_trakt.internal.pages.images`. Nothing
here raises while rendering: any failure becomes the empty state or the default image,
and is logged. The one exception is a template author's mistake: an unknown watchlist
``sort`` is a ``TemplateSyntaxError`` at render time with ``DEBUG`` on (naming the sorts
Trakt accepts), and with ``DEBUG`` off falls back to ``rank`` with a logged warning.

``{% trakt_watchlist user_or_username type="all" sort="rank" limit=10 posters=False template=... %}``
    Renders ``django_trakt/watchlist.html``; ``... as items`` stores the
    :class:`~django_trakt.internal.pages.watchlist.WatchlistResult` in ``items`` instead.
``{% trakt_avatar user size=64 css_class="" %}``
    Renders ``django_trakt/avatar.html``: an ``<img>`` served by this site.
``{% trakt_avatar_url user %}``
    Just the avatar's URL (``... as url`` works, it is a simple tag).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

from django import template
from django.conf import settings
from django.template import Engine, TemplateSyntaxError
from django.template.context import Context

from django_trakt.internal.links.profile import TraktProfile, trakt_account_of
from django_trakt.internal.pages import images
from django_trakt.internal.pages.watchlist import get_watchlist
from django_trakt.internal.pages.watchlist_items import WatchlistError, WatchlistResult, is_valid_sort, sort_error

logger = logging.getLogger(__name__)
register = template.Library()

WATCHLIST_TEMPLATE = "django_trakt/watchlist.html"
DEFAULT_LIMIT = 10
DEFAULT_AVATAR_SIZE = 64


# -- plain functions (unit-testable) --------------------------------------------------------------


def avatar_context(user: Any, size: Any = DEFAULT_AVATAR_SIZE, css_class: str = "") -> dict[str, Any]:
    """The context of ``django_trakt/avatar.html``: our own image URL, never Trakt's."""
    try:
        pixels = int(size)
    except (TypeError, ValueError):
        pixels = DEFAULT_AVATAR_SIZE
    pixels = min(max(pixels, 1), 1024)
    src, alt = "", ""
    try:
        account = trakt_account_of(user)
        if account is not None:
            src = images.avatar_url(account) or ""
            alt = TraktProfile(account).username
    except Exception:
        logger.exception("The Trakt avatar could not be looked up")
    return {
        "src": src or images.default_image_url(images.AVATAR),
        "size": pixels,
        "alt": alt,
        "css_class": css_class or "",
    }


def checked_sort(sort: Any) -> Any:
    """``sort`` if Trakt accepts it; else an error in ``DEBUG``, ``"rank"`` (logged) in production.

    The sort is usually a literal in a template, so a wrong one is the template author's
    bug: in development it fails loudly at render time (the value can come from a variable,
    so it cannot be told at compile time); in production the list still shows, in rank order.
    """
    if sort is None or is_valid_sort(sort):
        return sort
    message = sort_error(sort)
    if settings.DEBUG:
        raise TemplateSyntaxError(message)
    logger.warning("%s; showing the list by rank", message)
    return "rank"


def watchlist_result(user_or_username: Any, **options: Any) -> WatchlistResult:
    """:func:`get_watchlist`, with any unexpected error turned into the empty state."""
    try:
        return get_watchlist(user_or_username, **options)
    except Exception:
        logger.exception("The Trakt watchlist could not be rendered")
        list_type = options.get("type")
        return WatchlistResult([], list_type if isinstance(list_type, str) else "all", error=WatchlistError.UNAVAILABLE)


# -- tags -----------------------------------------------------------------------------------------


@register.inclusion_tag("django_trakt/avatar.html")
def trakt_avatar(user: Any, size: Any = DEFAULT_AVATAR_SIZE, css_class: str = "") -> dict[str, Any]:
    """``{% trakt_avatar user size=64 %}``: the user's Trakt avatar, self-hosted (or the default)."""
    return avatar_context(user, size, css_class)


@register.simple_tag
def trakt_avatar_url(user: Any) -> str:
    """``{% trakt_avatar_url user %}``: the URL ``trakt_avatar`` would use."""
    return str(avatar_context(user)["src"])


@dataclasses.dataclass(frozen=True)
class RenderedWatchlist(WatchlistResult):
    """What ``{% trakt_watchlist %}`` gives: the list's data, which is also its HTML when output.

    ``{% trakt_watchlist user %}`` outputs it (Django calls ``__html__``); ``... as items``
    stores it, to loop over or to output later with ``{{ items }}``.
    """

    render: Callable[[], str] = dataclasses.field(default=lambda: "", repr=False, compare=False)

    def __html__(self) -> str:
        return self.render()

    def __str__(self) -> str:
        return self.render()


def render_watchlist(
    engine: Engine, context: Context, result: WatchlistResult, *, posters: bool, template_name: str
) -> str:
    """The HTML of ``result`` with ``template_name`` ("" and logged if that template fails)."""
    try:
        values = {
            "watchlist": result,
            "posters": posters,
            "default_poster": images.default_image_url(images.POSTER) if posters else "",
        }
        return engine.get_template(template_name).render(context.new(values))
    except Exception:
        logger.exception("The Trakt watchlist template %s could not be rendered", template_name)
        return ""


@register.simple_tag(takes_context=True)
def trakt_watchlist(
    context: Context,
    user_or_username: Any,
    *,
    type: Any = None,
    sort: Any = None,
    limit: Any = DEFAULT_LIMIT,
    posters: Any = False,
    template: Any = None,
) -> RenderedWatchlist:
    """``{% trakt_watchlist user type="movies" sort="rank" limit=10 %}`` or ``... as items``."""
    options = {"type": type, "sort": checked_sort(sort), "limit": limit}
    result = watchlist_result(user_or_username, **{name: value for name, value in options.items() if value is not None})
    engine = context.template.engine if context.template is not None else Engine.get_default()
    render = functools.partial(
        render_watchlist, engine, context, result, posters=bool(posters), template_name=template or WATCHLIST_TEMPLATE
    )
    return RenderedWatchlist(
        **{field.name: getattr(result, field.name) for field in dataclasses.fields(result)}, render=render
    )
