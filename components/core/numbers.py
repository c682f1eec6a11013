"""What counts as a number in a request or a label: JSON's numbers, checked before use.

JSON has no size limit on an integer: ``1`` followed by 400 digits parses as a Python int,
and ``math.isfinite`` or ``float`` on it raises ``OverflowError`` (a 500 where ``1e400``,
parsed as infinity, got 400). Every route asks here instead.
"""

from __future__ import annotations

import math


def finite_number(value, limit: float = math.inf) -> bool:
    """``value`` is an int or float (not a bool), finite, and at most ``limit`` in size."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        number = float(value)
    except OverflowError:  # an integer past float64
        return False
    return math.isfinite(number) and abs(number) <= limit
