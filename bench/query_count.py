"""Counts the SQL statements a measured process runs, for ``bench/refresh.py``.

Each process writes its count and its peak resident memory (``VmHWM``, in kB) to
``$BENCH_QUERY_DIR/<pid>``: at exit, and after each task
(a forking RQ worker's work-horse ends with ``os._exit``, which skips ``atexit``). The count
is per process id, so a work-horse does not inherit its parent's.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_counts: Counter[int] = Counter()
_lock = threading.Lock()


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    with _lock:
        _counts[os.getpid()] += 1
    return execute(sql, params, many, context)


def write(**_: Any) -> None:
    folder = os.environ.get("BENCH_QUERY_DIR")
    pid = os.getpid()
    if folder and _counts[pid]:
        (Path(folder) / str(pid)).write_text(f"{_counts[pid]} {peak_kb()}")


def peak_kb() -> int:
    """This process's peak resident memory (not ``ru_maxrss``: Linux carries that over ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def install() -> None:
    from django.db.backends.signals import connection_created

    def instrument(sender: Any, connection: Any, **kwargs: Any) -> None:
        if _count not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count)

    connection_created.connect(instrument, weak=False)
    atexit.register(write)
    try:
        from django_tasks.signals import task_finished
    except ImportError:
        return
    task_finished.connect(write, weak=False)


def total(folder: Path) -> tuple[int, int]:
    """The statements of every process, and the largest peak memory of one (kB)."""
    rows = [[int(number) for number in path.read_text().split()] for path in folder.iterdir()]
    return sum(row[0] for row in rows), max((row[1] for row in rows), default=0)
