#!/usr/bin/env python3
"""Benchmark: a page with the Trakt avatar and a watchlist of 10, 100 and 250 items.

    python bench/render.py [--sizes 10 100 250] [--renders 300] [--repeats 5] [--trakt-delay 2]

Runs on the test settings (SQLite in memory, Django's locmem cache) against the local
Trakt in-process (``responses``), so it needs no network. For each size it prints, per
render of the page, the outbound requests and the database queries with a cold cache
(cleared before each render) and a warm one, and the warm render time as a ratio to the
same templates rendering the same items passed in directly (best of ``--repeats`` runs
of ``--renders`` renders each). Targets (issue 4): warm, 0 requests and a ratio of at
most 1.5; cold, at most one ``last_activities`` call plus one call per page of items;
queries per render the same for every size.

Then, with a task backend (``TRAKT_TASK_BACKEND``; the Tasks framework's dummy backend,
which keeps what is enqueued: workers are not what is measured) and the local Trakt
answering after ``--trakt-delay`` seconds, every copy past its TTL: the render time of the
100-item page as a ratio to the warm render (target: at most 1.5), the Trakt requests the
renders made (target: 0) and the revalidations enqueued (one for all renders). One render
of the same stale page without a task backend is timed beside it: that one waits for Trakt.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent

PAGE = (
    "{% load trakt %}<header>{% trakt_avatar user size=64 %}</header>"
    '<main>{% trakt_watchlist user type="movies" limit=limit %}</main>'
)
#: The same markup with everything passed in: the cost of the templates alone.
BASELINE = (
    '<header>{% include "django_trakt/avatar.html" %}</header><main>{% include "django_trakt/watchlist.html" %}</main>'
)


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.pop("DATABASE_URL", None)  # an in-memory SQLite database of our own
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def per_render(trakt, render, clear_cache: bool, count: int = 5) -> tuple[float, Counter, float]:
    """Average outbound requests (and their paths) and queries per render."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    trakt.reset_requests()
    queries = 0
    for _ in range(count):
        if clear_cache:
            cache.clear()
        with CaptureQueriesContext(connection) as captured:
            render()
        queries += len(captured)
    paths = Counter(
        "last_activities" if request.path.endswith("last_activities") else "watchlist page"
        for request in trakt.requests
    )
    return len(trakt.requests) / count, Counter({k: v / count for k, v in paths.items()}), queries / count


def best_time(render, renders: int, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(renders):
            render()
        best = min(best, (time.perf_counter() - started) / renders)
    return best


def measure(size: int, renders: int, repeats: int) -> dict[str, object]:
    from django.core.cache import cache
    from django.template import Context, Template
    from django.test import override_settings

    from django_trakt.internal.pages import watchlist_items
    from django_trakt.internal.pages.watchlist import get_watchlist
    from django_trakt.templatetags.trakt import avatar_context
    from tests.conftest import link_user, make_emulator

    trakt = make_emulator()
    # The benchmark renders cold pages many times over: Trakt's 500 GETs per 5 minutes per
    # user (the local Trakt enforces it) would turn the later renders into rate-limit pages.
    trakt.get_limit = None
    with (
        trakt.mock(),
        override_settings(TRAKT_IMAGE_HOSTS=["trakt.test"]),
        mock.patch.object(watchlist_items, "WATCHLIST_MAX_ITEMS", max(size, 100)),
    ):
        user, _token = link_user(trakt, f"bench{size}")
        account = user.socialaccount_set.get()
        account.extra_data["user"]["images"] = {
            "avatar": {"full": f"https://trakt.test/images/avatars/bench{size}.png"}
        }
        account.save()
        trakt.fill_watchlist(user.username, size)
        cache.clear()

        page = Template(PAGE)

        def render_page() -> str:
            return page.render(Context({"user": user, "limit": size}))

        cold_requests, cold_paths, cold_queries = per_render(trakt, render_page, clear_cache=True)
        render_page()
        warm_requests, _warm_paths, warm_queries = per_render(trakt, render_page, clear_cache=False)

        baseline = Template(BASELINE)
        context = {**avatar_context(user, 64), "watchlist": get_watchlist(user, type="movies", limit=size)}
        if len(context["watchlist"]) != size:
            raise SystemExit(f"expected {size} items, got {len(context['watchlist'])}")

        def render_baseline() -> str:
            return baseline.render(Context(context))

        if render_baseline() != render_page():
            raise SystemExit("the baseline does not render the same HTML as the tags")
        tag_time = best_time(render_page, renders, repeats)
        direct_time = best_time(render_baseline, renders, repeats)
    return {
        "size": size,
        "pages": math.ceil(size / 100),
        "cold_requests": cold_requests,
        "cold_paths": cold_paths,
        "cold_queries": cold_queries,
        "warm_requests": warm_requests,
        "warm_queries": warm_queries,
        "tag_ms": tag_time * 1000,
        "direct_ms": direct_time * 1000,
        "ratio": tag_time / direct_time,
    }


def measure_stale(size: int, renders: int, repeats: int, delay: float) -> dict[str, float]:
    from django.core.cache import cache
    from django.template import Context, Template
    from django.test import override_settings

    from django_trakt import task_queue
    from django_trakt.internal.core import clock
    from django_trakt.internal.pages import watchlist_items
    from tests.conftest import link_user, make_emulator

    trakt = make_emulator()
    trakt.get_limit = None
    framework = task_queue.tasks_module.__name__
    queues = {
        "default": {"BACKEND": f"{framework}.backends.immediate.ImmediateBackend"},
        "bench": {"BACKEND": f"{framework}.backends.dummy.DummyBackend"},
    }
    real_now = clock.now
    with (
        trakt.mock(),
        override_settings(TRAKT_IMAGE_HOSTS=["trakt.test"]),
        mock.patch.object(watchlist_items, "WATCHLIST_MAX_ITEMS", max(size, 100)),
    ):
        user, _token = link_user(trakt, f"stale{size}")
        trakt.fill_watchlist(user.username, size)
        cache.clear()
        page = Template(PAGE)

        def render_page() -> str:
            return page.render(Context({"user": user, "limit": size}))

        render_page()
        warm = best_time(render_page, renders, repeats)
        trakt.latency = delay
        trakt.reset_requests()
        clock.now = lambda: real_now() + 3600  # every copy is past its TTL (and its activities)
        try:
            with override_settings(TASKS=queues, TRAKT_TASK_BACKEND="bench"):
                queue = task_queue.backend()
                queue.clear()
                stale = best_time(render_page, renders, repeats)
                requests, enqueued = len(trakt.requests), len(queue.results)
            started = time.perf_counter()
            render_page()  # no task backend: this render asks Trakt and waits
            in_process = time.perf_counter() - started
        finally:
            clock.now = real_now
    return {
        "warm_ms": warm * 1000,
        "stale_ms": stale * 1000,
        "ratio": stale / warm,
        "requests": requests,
        "enqueued": enqueued,
        "renders": renders * repeats,
        "in_process_ms": in_process * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 250])
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trakt-delay", type=float, default=2.0, help="seconds the local Trakt takes to answer")
    args = parser.parse_args()
    setup()
    results = [measure(size, args.renders, args.repeats) for size in args.sizes]

    print("page: {% trakt_avatar user %} + {% trakt_watchlist user type='movies' limit=N %}")
    header = (
        f"{'items':>6} | {'cold: requests (activities + pages)':>36} | {'queries':>7} | "
        f"{'warm: requests':>14} | {'queries':>7} | {'tag ms':>7} | {'direct ms':>9} | {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        paths = r["cold_paths"]
        cold = f"{r['cold_requests']:g} ({paths['last_activities']:g} + {paths['watchlist page']:g})"
        print(
            f"{r['size']:>6} | {cold:>36} | {r['cold_queries']:>7g} | {r['warm_requests']:>14g} | "
            f"{r['warm_queries']:>7g} | {r['tag_ms']:>7.3f} | {r['direct_ms']:>9.3f} | {r['ratio']:>5.2f}"
        )
    # The page is the 100-item one; with fewer items the fixed cost (one query for
    # the avatar's account, one cache read) weighs more and the ratio is only informative.
    page = [r for r in results if r["size"] == 100] or results
    warm_ok = all(r["warm_requests"] == 0 for r in results) and all(r["ratio"] <= 1.5 for r in page)
    cold_ok = all(
        r["cold_paths"]["last_activities"] <= 1 and r["cold_paths"]["watchlist page"] <= r["pages"] for r in results
    )
    queries_ok = len({(r["cold_queries"], r["warm_queries"]) for r in results}) == 1
    print()
    print(f"warm cache: 0 requests for every size, ratio <= 1.5 for the 100-item page: {warm_ok}")
    print(f"cold cache: <= 1 last_activities + 1 call per page of items: {cold_ok}")
    print(f"queries per render the same for every size: {queries_ok}")
    stale = measure_stale(100, args.renders, args.repeats, args.trakt_delay)
    stale_ok = stale["ratio"] <= 1.5 and stale["requests"] == 0 and stale["enqueued"] == 1
    print()
    print(f"with a task backend, Trakt answering after {args.trakt_delay:g} s, every copy past its TTL (100 items):")
    print(
        f"  render {stale['stale_ms']:.3f} ms vs warm {stale['warm_ms']:.3f} ms: ratio {stale['ratio']:.2f}; "
        f"Trakt requests by {stale['renders']:g} renders: {stale['requests']:g}; "
        f"revalidations enqueued: {stale['enqueued']:g}"
    )
    print(f"  (the same stale render without a task backend: {stale['in_process_ms']:.0f} ms)")
    print(f"ratio <= 1.5, 0 Trakt requests, 1 revalidation enqueued: {stale_ok}")
    ok = warm_ok and cold_ok and queries_ok and stale_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
