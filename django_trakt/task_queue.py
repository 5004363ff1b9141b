"""The queue side of :mod:`django_trakt.tasks`: the Tasks framework, the site's backend, enqueueing.

Defined with the Tasks framework: ``django.tasks`` (Django 6.0+) where it exists, else the
``django-tasks`` backport (Django 4.2 and 5.2); a site with neither keeps every behaviour in
process. ``TRAKT_TASK_BACKEND`` names the alias in ``TASKS`` that runs the tasks (None: in
process). Not public: a site imports the tasks from :mod:`django_trakt.tasks`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable
from typing import Any

from django_trakt.conf import trakt_settings

logger = logging.getLogger(__name__)


def _framework() -> Any:
    """``django.tasks`` (Django 6.0+), else the ``django_tasks`` backport, else None."""
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


#: The Tasks framework's module, or None.
tasks_module = _framework()


def define(func: Callable[..., Any]) -> Any:
    """``func`` as a Task of the framework (the plain function when there is none).

    Defining a Task validates it against a backend, so it is defined against the configured
    one (workers import :mod:`django_trakt.tasks` with the site's settings) or ``TASKS``'
    default; a site whose backends cannot be built still imports the tasks and works in process.
    """
    if tasks_module is None:
        return func
    for alias in dict.fromkeys((trakt_settings.TASK_BACKEND, "default")):
        if not alias:
            continue
        try:
            return tasks_module.task(backend=alias, queue_name=trakt_settings.TASK_QUEUE)(func)
        except Exception as err:
            # Reported where it matters: backend() logs it and check E004 names it.
            logger.debug("Task %s not defined on backend %r: %s", func.__name__, alias, err)
    return func


_reported: set[str] = set()


def backend() -> Any:
    """The backend of ``TRAKT_TASK_BACKEND``, or None (none set, or unusable: logged at ERROR once).

    A mistyped alias must not cost anyone their link: the work then runs in process, as
    without a backend, and check ``django_trakt.E004`` says what is wrong.
    """
    alias = trakt_settings.TASK_BACKEND
    if alias is None:
        return None
    problem = ""
    if tasks_module is None:
        problem = "neither django.tasks (Django 6.0+) nor the django-tasks backport is installed"
    else:
        try:
            return tasks_module.task_backends[alias]
        except Exception as err:
            problem = f"{type(err).__name__}: {err}"
    if alias not in _reported:
        _reported.add(alias)
        logger.error("TRAKT_TASK_BACKEND %r cannot be used (%s); the Trakt work runs in process", alias, problem)
    return None


class QueueUnavailable(Exception):
    """The task queue refused a task (its broker is down): :func:`django_trakt.tasks.enqueue_due` stopped there."""


def enqueue(task_: Any, *args: Any, run_after: dt.datetime | None = None, strict: bool = False) -> bool:
    """Enqueue on the site's backend; False when there is none or it refused (``strict``: raise
    :class:`QueueUnavailable` instead of logging)."""
    queue = backend()
    if queue is None or not hasattr(task_, "using"):
        return False
    options: dict[str, Any] = {"backend": trakt_settings.TASK_BACKEND, "queue_name": trakt_settings.TASK_QUEUE}
    if run_after is not None:
        options["run_after"] = run_after
    try:
        task_.using(**options).enqueue(*args)
    except Exception as err:
        if strict:
            reason = " ".join(str(err).split())[:200]
            raise QueueUnavailable(f"the task queue refused a task ({type(err).__name__}: {reason})") from err
        # The broker is down, or the backend refuses: the caller does the work in process.
        logger.exception("Enqueuing the Trakt task %s failed", getattr(task_, "name", task_))
        return False
    return True


def supports_defer() -> bool:
    """Whether the configured backend can run a task later (``run_after``): retries need it."""
    return bool(getattr(backend(), "supports_defer", False))


class QueueDispatcher:
    """What :mod:`django_trakt.internal.core.dispatch` hands work to: the site's queue.

    ``tasks`` maps each name of work the lower layers hand over to a function answering its task.
    """

    def __init__(self, tasks: dict[str, Callable[[], Any]]) -> None:
        self.tasks = tasks

    def active(self) -> bool:
        return backend() is not None

    def enqueue(self, name: str, *args: Any) -> bool:
        return enqueue(self.tasks[name](), *args)
