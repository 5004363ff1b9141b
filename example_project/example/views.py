from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from django_trakt.redirect_uri import trakt_callback_url


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("profile")
    context = {"uses_real_trakt": settings.USES_REAL_TRAKT}
    if settings.USES_REAL_TRAKT:
        # What to register as the redirect URI of your app on trakt.tv, exactly.
        context["trakt_redirect_uri"] = trakt_callback_url(request)
    return render(request, "example/home.html", context)


def tv(request: HttpRequest) -> HttpResponse:
    """A TV app's screens, played by the page's script: it talks to the site only through
    allauth's headless API (the app client, with its X-Session-Token), as an app would."""
    return render(request, "example/tv.html")


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    trakt_account = (
        SocialAccount.objects.filter(user=request.user, provider="trakt").select_related("trakt_token").first()
    )
    return render(request, "example/profile.html", {"trakt_account": trakt_account})
