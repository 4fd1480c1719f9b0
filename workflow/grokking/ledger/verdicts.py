"""Verdict rules: each claim of the ledger is judged by one of these, never by hand.

A rule reads a ``Measured`` (the number a claim is about, optionally its 95 % interval and how many
runs it rests on) and answers ``holds``, ``does not hold`` or ``inconclusive``. NaN, too few runs, or
an interval that straddles the line are inconclusive: the claim was not testable at this size, which
is not the same as false. Each rule carries its own text, which the ledger prints beside the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)


@dataclass(frozen=True)
class Measured:
    """What a claim's measure found.

    - ``value``: the number the rule judges (NaN: nothing to judge at this size);
    - ``text``: ours, as the ledger shows it (units, the interval, the runs behind it);
    - ``size``: what it was measured on (grid, budget, seeds), so a verdict is never read without it;
    - ``low``/``high``: a 95 % interval around ``value`` where the measure has one;
    - ``n``: the number of runs (or cells) behind it, where a rule asks for a minimum.
    """

    value: float
    text: str
    size: str
    low: float = math.nan
    high: float = math.nan
    n: int | None = None


@dataclass(frozen=True)
class Rule:
    """A verdict rule: ``text`` says it in words, ``judge`` applies it."""

    text: str
    judge: Callable[[Measured], str]

    def __call__(self, measured: Measured) -> str:
        return self.judge(measured)


def _missing(m: Measured, min_n: int) -> bool:
    return m.value is None or math.isnan(float(m.value)) or (m.n is not None and m.n < min_n)


def _support(min_n: int) -> str:
    return f"; inconclusive with fewer than {min_n} runs" if min_n > 1 else ""


def at_least(threshold: float, min_n: int = 1, unit: str = "") -> Rule:
    """Holds when the value reaches ``threshold``."""
    def judge(m: Measured) -> str:
        if _missing(m, min_n):
            return INCONCLUSIVE
        return HOLDS if m.value >= threshold else FAILS
    return Rule(f"holds if >= {threshold:g}{unit}{_support(min_n)}", judge)


def at_most(threshold: float, min_n: int = 1, unit: str = "") -> Rule:
    """Holds when the value stays at or below ``threshold``."""
    def judge(m: Measured) -> str:
        if _missing(m, min_n):
            return INCONCLUSIVE
        return HOLDS if m.value <= threshold else FAILS
    return Rule(f"holds if <= {threshold:g}{unit}{_support(min_n)}", judge)


def within(low: float, high: float, min_n: int = 1, unit: str = "") -> Rule:
    """Holds when the value lies in [low, high]."""
    def judge(m: Measured) -> str:
        if _missing(m, min_n):
            return INCONCLUSIVE
        return HOLDS if low <= m.value <= high else FAILS
    return Rule(f"holds if within [{low:g}, {high:g}]{unit}{_support(min_n)}", judge)


def sign(expected: int, min_n: int = 3) -> Rule:
    """Holds when the 95 % interval lies on the ``expected`` side of zero (+1 or -1), fails when it
    lies on the other side, inconclusive when it contains zero. Without an interval the point
    value's sign decides."""
    if expected not in (1, -1):
        raise ValueError(f"sign: expected +1 or -1, got {expected!r}")
    side = "positive" if expected > 0 else "negative"

    def judge(m: Measured) -> str:
        if _missing(m, min_n):
            return INCONCLUSIVE
        low, high = (m.low, m.high) if not (math.isnan(m.low) or math.isnan(m.high)) else (m.value, m.value)
        if expected * low > 0 and expected * high > 0:
            return HOLDS
        if expected * low < 0 and expected * high < 0:
            return FAILS
        return INCONCLUSIVE
    return Rule(f"holds if {side}: the 95 % interval excludes 0 on that side (else the point value's sign); "
                f"inconclusive if it contains 0{_support(min_n)}", judge)


def is_true(min_n: int = 1) -> Rule:
    """Holds when the measured condition is 1 (true), fails when 0."""
    def judge(m: Measured) -> str:
        if _missing(m, min_n):
            return INCONCLUSIVE
        return HOLDS if m.value >= 0.5 else FAILS
    return Rule(f"holds if the condition is met{_support(min_n)}", judge)
