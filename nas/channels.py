"""Channel rounding shared by the space (width multiplier) and the operators (hidden widths)."""
from __future__ import annotations


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round `value` to a multiple of `divisor`, never dropping more than 10% (MobileNet convention)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
