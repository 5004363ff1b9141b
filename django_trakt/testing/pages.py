"""The few HTML pages a browser sees: consent, device activation, profile, errors.

They are deliberately plain (labelled controls, real buttons, no script) so that a
person can click through the example site and a test can submit the same form with
``requests``; every value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape


def _page(title: str, body: str) -> bytes:
    """Wrap ``body`` in a minimal, valid HTML document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)} - Trakt (emulated)</title>\n"
        "</head>\n<body>\n<main>\n"
        f"{body}\n"
        "</main>\n</body>\n</html>\n"
    ).encode()


def _user_control(usernames: Iterable[str], selected: str | None = None) -> str:
    """A ``<select name="username">`` of known users, or a text field if none exist."""
    names = list(usernames)
    if not names:
        return (
            '<p><label for="username">Trakt username</label>\n'
            '<input id="username" name="username" type="text" required></p>'
        )
    chosen = selected if selected in names else names[0]
    options = "\n".join(
        f'<option value="{escape(name)}"{" selected" if name == chosen else ""}>{escape(name)}</option>'
        for name in names
    )
    return (
        f'<p><label for="username">Sign in as</label>\n<select id="username" name="username">\n{options}\n</select></p>'
    )


def _decision_buttons() -> str:
    return (
        '<p><button type="submit" name="decision" value="approve">Approve</button>\n'
        '<button type="submit" name="decision" value="deny">Deny</button></p>'
    )


def consent_page(app_name: str, params: Mapping[str, str], usernames: Iterable[str]) -> bytes:
    """The ``/oauth/authorize`` page: the app asks, a user approves or denies.

    The original query parameters travel as hidden fields so the POST can be
    validated exactly like the GET.
    """
    hidden = "\n".join(
        f'<input type="hidden" name="{escape(key)}" value="{escape(value)}">'
        for key, value in params.items()
        if key not in ("username", "decision")
    )
    body = (
        f"<h1>Authorize {escape(app_name)}</h1>\n"
        f"<p><strong>{escape(app_name)}</strong> would like to connect to your Trakt account.</p>\n"
        '<form method="post" action="/oauth/authorize">\n'
        f"{hidden}\n{_user_control(usernames)}\n{_decision_buttons()}\n</form>"
    )
    return _page(f"Authorize {app_name}", body)


def activate_page(usernames: Iterable[str], user_code: str = "", message: str = "") -> bytes:
    """The device-flow page where a user types the code shown on their device."""
    note = f'<p role="status">{escape(message)}</p>\n' if message else ""
    body = (
        "<h1>Activate your device</h1>\n"
        f"{note}"
        '<form method="post" action="/activate">\n'
        '<p><label for="code">Code</label>\n'
        f'<input id="code" name="code" type="text" value="{escape(user_code)}" '
        'autocomplete="off" required></p>\n'
        f"{_user_control(usernames)}\n{_decision_buttons()}\n</form>"
    )
    return _page("Activate", body)


def message_page(title: str, message: str) -> bytes:
    """A short page stating an outcome or an error (used for 400 pages too)."""
    return _page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>")


def profile_page(username: str, name: str | None, slug: str, avatar_url: str | None) -> bytes:
    """A user's public profile, so profile links in a site lead somewhere."""
    avatar = f'<p><img src="{escape(avatar_url)}" alt="" width="64" height="64"></p>\n' if avatar_url else ""
    display = name or username
    body = f"<h1>{escape(display)}</h1>\n{avatar}<p>@{escape(username)} (<code>{escape(slug)}</code>)</p>"
    return _page(display, body)


def cloudflare_page(status: int) -> bytes:
    """What Cloudflare sends in front of Trakt when it blocks a request.

    Its rate-limit page (429) reads "Access denied ... has banned you temporarily"
    (trakt/trakt-api#922).
    """
    if status == 429:
        body = (
            "<h1>Access denied</h1>\n"
            "<p>The owner of this website (api.trakt.tv) has banned you temporarily from accessing "
            "this website (emulated Cloudflare).</p>\n<p>Cloudflare Ray ID: <code>emulated</code></p>"
        )
        return _page("Access denied | api.trakt.tv used Cloudflare to restrict access", body)
    body = (
        "<h1>Sorry, you have been blocked</h1>\n"
        "<p>You are unable to access trakt.tv (emulated Cloudflare, "
        f"status {status}).</p>\n<p>Cloudflare Ray ID: <code>emulated</code></p>"
    )
    return _page("Attention Required! | Cloudflare", body)
