"""The example's 404 page with DEBUG on, too.

Django shows its technical 404 page while ``DEBUG`` is on and ``404.html`` only with it
off. The example runs with DEBUG on (runserver serves its static files, and the local
Trakt's images are trusted only then), yet a visitor of a showcase should meet the page a
product shows. HTML answers only: the headless API's JSON 404s and images pass untouched.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class NotFoundPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith(settings.STATIC_URL)
        ):
            return render(request, "404.html", status=404)
        return response
