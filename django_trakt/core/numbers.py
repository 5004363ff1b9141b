"""Numbers in Trakt's answers (lifetimes, intervals, ``Retry-After``), read defensively."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float (a JSON number or a numeric string), else ``None``.

    ``True``, ``"soon"``, ``NaN`` and infinities (JSON's ``1e999``) are all "no answer":
    callers fall back to their default instead of crashing on them later.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
