"""Views of the test site that use Trakt the way a site's own views would."""

from django.http import HttpResponse

from django_trakt.internal.links import durability
from django_trakt.internal.links.client import TraktClient

#: Whether each run of ``settings_then_fail`` found itself inside a transaction of the caller's.
SEEN: list[bool] = []


class ViewFailedAfterRefresh(Exception):
    pass


def settings_then_fail(request):
    """Asks Trakt as the user (refreshing a due token on the way), then fails."""
    SEEN.append(durability.in_callers_transaction())
    TraktClient.for_user(request.user).get("/users/settings")
    raise ViewFailedAfterRefresh("the view failed after talking to Trakt")


def settings_ok(request):
    """Asks Trakt as the user and answers with their Trakt username."""
    document = TraktClient.for_user(request.user).get("/users/settings")
    return HttpResponse(document["user"]["username"])
