"""Numbers from outside (Trakt's answers, an app's token, settings), read defensively."""

from __future__ import annotations

import math
import numbers
from decimal import Decimal
from typing import Any


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float (a JSON number, a ``Decimal``, a numeric string), else ``None``.

    ``True``, ``"soon"``, ``NaN`` and infinities (JSON's ``1e999``) are all "no answer":
    callers fall back to their default instead of crashing on them later. So is a number too
    large for a float (an app's ``expires_in`` of 400 digits): ``float()`` raises
    ``OverflowError`` for such an ``int`` instead of answering infinity, and an exception
    here would be a 500 with the caller's frames (a token among their variables) on the
    error page.
    """
    # Decimal is no numbers.Real (it does not mix with float), but a JSON parser may give one.
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal, str)):
        return None
    try:
        number = float(value)
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        # ValueError: "soon", Decimal's signaling NaN; OverflowError: an int past float's range.
        return None
    return number if math.isfinite(number) else None
