from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("profile")
    return render(request, "example/home.html", {"uses_real_trakt": settings.USES_REAL_TRAKT})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    trakt_account = (
        SocialAccount.objects.filter(user=request.user, provider="trakt").select_related("trakt_token").first()
    )
    return render(request, "example/profile.html", {"trakt_account": trakt_account})
