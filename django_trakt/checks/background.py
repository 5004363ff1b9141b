"""Checks of background work (README "Background work"): the task backend (E004, W011) and the
cache its workers share (W012)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_trakt.conf import trakt_settings

# -- background work (README "Background work") -------------------------------------------------

#: Backends that take a task but do not run it on a worker: pages would wait (immediate) or
#: never be brought up to date (dummy).
_NOT_A_QUEUE = {"ImmediateBackend": "runs each task in the request that enqueues it", "DummyBackend": "never runs"}
#: Caches each process has its own of: the shared refresh budget and the "queued once" marks
#: would be per process.
_PER_PROCESS_CACHES = ("LocMemCache", "DummyCache")


@checks.register()
def check_task_backend(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E004: TRAKT_TASK_BACKEND cannot be used; W011: it is no queue; W012: the cache is per process."""
    alias = trakt_settings.TASK_BACKEND
    if alias is None:
        return []
    from django_trakt import task_queue

    queue = task_queue.backend()
    if queue is None:
        return [
            checks.Error(
                f"TRAKT_TASK_BACKEND is {alias!r}, which is not a usable task backend: the Trakt work runs "
                "in process (pages wait for Trakt) until it is fixed.",
                hint="Name an alias of TASKS (django.tasks on Django 6.0+, or install django-tasks on older "
                "Djangos: pip install django-trakt[tasks]), or set TRAKT_TASK_BACKEND = None.",
                id="django_trakt.E004",
            )
        ]
    found: list[checks.CheckMessage] = []
    kind = type(queue).__name__
    if kind in _NOT_A_QUEUE:
        found.append(
            checks.Warning(
                f"TRAKT_TASK_BACKEND {alias!r} is a {kind}, which {_NOT_A_QUEUE[kind]}.",
                hint="Use a backend with workers (RQ, the database, Celery...) for the Trakt tasks.",
                id="django_trakt.W011",
            )
        )
    from django.core.cache import caches

    try:
        cache_kind = type(caches[trakt_settings.CACHE]).__name__
    except Exception:
        cache_kind = ""
    if cache_kind in _PER_PROCESS_CACHES:
        found.append(
            checks.Warning(
                f"TRAKT_CACHE {trakt_settings.CACHE!r} is a {cache_kind}: with task workers, the refresh budget "
                "and the marks that enqueue each revalidation once are per process, not shared.",
                hint="Use a cache every web and worker process shares (Redis, Memcached) as TRAKT_CACHE.",
                id="django_trakt.W012",
            )
        )
    return found
