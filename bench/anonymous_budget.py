#!/usr/bin/env python3
"""Benchmark: the Trakt calls anonymous visitors can cause (issue 21).

    python bench/anonymous_budget.py [--requests 300]

Sends ``--requests`` anonymous requests to each endpoint that reaches Trakt before anyone
is signed in, from one IPv6 /64 (a new address every request) and from as many IPv4
addresses, and prints how many of them reached the local Trakt, against the budget
(``django_trakt.sign_in_budgets``):

* allauth's headless provider-token sign-in (a garbage token each time): ``GET /users/settings``;
* the sign-in by code's start: ``POST /oauth/device/code``;
* its poll (ten codes, Trakt's interval set to 0 so every poll may ask):
  ``POST /oauth/device/token``.

Runs on the test settings (SQLite in memory, Django's locmem cache) with the headless API,
against the local Trakt in-process (``responses``); the site's clock stands still, so all
requests fall in one budget window (at a window's edge up to twice a budget can pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP_API = "/_allauth/app/v1"


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.pop("DATABASE_URL", None)  # an in-memory SQLite database of our own
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    from django.core.management import call_command

    logging.disable(logging.WARNING)  # every refusal is logged; the figures are what is printed

    call_command("migrate", verbosity=0)


def ipv6_in_one_64(i: int) -> str:
    return f"2001:db8:7:7:{i:x}:{i * 7 % 65536:x}:{i * 13 % 65536:x}:{i + 1:x}"


def ipv4(i: int) -> str:
    return f"198.51.{i // 250 % 250}.{i % 250 + 1}"


def token_check(client, address: str, i: int):
    from django.conf import settings

    token = {"client_id": settings.TRAKT_CLIENT_ID, "access_token": f"garbage-{i}"}
    return client.post(
        f"{APP_API}/auth/provider/token",
        {"provider": "trakt", "process": "login", "token": token},
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def run(endpoint: str, addresses, count: int) -> tuple[int, Counter, float]:
    """``count`` requests on ``endpoint``: Trakt calls, answers by status, seconds."""
    from django.core.cache import cache
    from django.test import Client

    from tests.conftest import make_emulator

    cache.clear()
    trakt = make_emulator()
    trakt.device_interval = 0
    path = {"token": "/users/settings", "start": "/oauth/device/code", "poll": "/oauth/device/token"}[endpoint]
    statuses: Counter = Counter()
    with trakt.mock():
        apps = []
        if endpoint == "poll":
            # Ten codes (within the start budgets), each polled from ever new addresses.
            for n in range(10):
                client = Client()
                started = client.post(f"{APP_API}/auth/provider/trakt/code", REMOTE_ADDR=ipv4(10_000 + n))
                apps.append((client, started.json()["meta"]["session_token"]))
            trakt.reset_requests()
        started_at = time.perf_counter()
        for i in range(count):
            if endpoint == "token":
                response = token_check(Client(), addresses(i), i)
            elif endpoint == "start":
                response = Client().post(f"{APP_API}/auth/provider/trakt/code", REMOTE_ADDR=addresses(i))
            else:
                client, session_token = apps[i % len(apps)]
                response = client.post(
                    f"{APP_API}/auth/provider/trakt/code/poll",
                    HTTP_X_SESSION_TOKEN=session_token,
                    REMOTE_ADDR=addresses(i),
                )
            statuses[response.status_code] += 1
        elapsed = time.perf_counter() - started_at
        calls = len(trakt.requests_to(path))
    return calls, statuses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    setup()
    from django.conf import settings
    from django.test import override_settings

    from django_trakt.device.flow import DEVICE_START_LIMIT, DEVICE_START_PERIOD
    from django_trakt.internal.core import clock
    from django_trakt.sign_in_budgets import CODE_POLLS, CODE_STARTS, TOKEN_CHECKS

    now = time.time()
    clock.now = lambda: now - now % 300 + 1  # the start of a window: every request falls in it
    #: (per client, its period, site-wide, its period)
    budgets = {
        "token": (TOKEN_CHECKS.per_client, TOKEN_CHECKS.period, TOKEN_CHECKS.site_wide, TOKEN_CHECKS.period),
        "start": (
            DEVICE_START_LIMIT,
            DEVICE_START_PERIOD,
            CODE_STARTS.site_wide,
            CODE_STARTS.period,
        ),
        "poll": (CODE_POLLS.per_client, CODE_POLLS.period, CODE_POLLS.site_wide, CODE_POLLS.period),
    }
    names = {"token": "provider token", "start": "code start", "poll": "code poll"}
    headless = override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "allauth.headless"],
        ROOT_URLCONF="tests.headless_urls",
        HEADLESS_ONLY=True,
        HEADLESS_FRONTEND_URLS={"account_signup": "https://app.example/signup"},
    )
    print(f"{args.requests} anonymous requests per endpoint; Trakt calls (budget), answers by HTTP status")
    with headless:
        for endpoint in ("token", "start", "poll"):
            for label, addresses in (("one IPv6 /64", ipv6_in_one_64), (f"{args.requests} IPv4", ipv4)):
                per_client, client_period, site_wide, site_period = budgets[endpoint]
                budget, period = (
                    (per_client, client_period) if addresses is ipv6_in_one_64 else (site_wide, site_period)
                )
                calls, statuses, elapsed = run(endpoint, addresses, args.requests)
                answers = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
                print(
                    f"  {names[endpoint]:<15} {label:<13} {calls:>4} Trakt calls (budget {budget} per {period:g} s); "
                    f"answers {answers}; {elapsed / args.requests * 1000:.1f} ms per request"
                )


if __name__ == "__main__":
    main()
