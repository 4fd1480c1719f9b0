"""When an MNIST run measures its accuracies: the evaluation schedule (study key ``eval``).

T values are steps of this schedule, so its spacing is their resolution. The schedule is a list of
strides, each up to a step, then one stride for the rest of the run:

    eval:
      strides: [{every: 5, until: 500}, {every: 10, until: 1000}, {every: 20, until: 2000},
                {every: 100, until: 5000}, {every: 250, until: 10000}]
      every_after: 500

is every 5th step up to 500, every 10th up to 1000, ..., every 500th after 10,000 (430 evaluations
in 1e5 steps). Below 2,000 steps a T value is within 5 steps or 2 % of the exact crossing step, and
late in a run an evaluation comes at least every 500 steps. The report's public code evaluated at
about 1000 log-spaced epochs (dense early, coarse late), which this follows without depending on the
budget: a step is an evaluation step or not whatever the budget, so a continuation to an extended
budget evaluates where one uninterrupted run would.

The older form ``{every, until, every_after}`` (one stride, then ``every_after``) is still accepted
and means ``strides: [{every, until}]``. Nothing here imports torch: config validation uses it.
"""

from __future__ import annotations

from typing import Any, Iterator

DEFAULT_STRIDES = (
    {"every": 5, "until": 500},
    {"every": 10, "until": 1000},
    {"every": 20, "until": 2000},
    {"every": 100, "until": 5000},
    {"every": 250, "until": 10000},
)
DEFAULT_EVERY_AFTER = 500


def normalize_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """The schedule as ``{strides: [...], every_after}``, from either form, defaults filled in.

    Raises ValueError naming the key when the strides do not make a schedule: each stride's range
    (from the previous ``until``) must be a whole number of strides, so that every ``until`` is
    itself an evaluation step.
    """
    legacy = {"every", "until"} & set(schedule)
    if legacy and "strides" in schedule:
        raise ValueError("strides: give either `strides` or the older `every`/`until`, not both")
    if legacy:
        strides = [{"every": int(schedule.get("every", 100)), "until": int(schedule.get("until", 10000))}]
    else:
        strides = [dict(s) for s in schedule.get("strides", DEFAULT_STRIDES)]
    start = 0
    for i, stride in enumerate(strides):
        every, until = int(stride["every"]), int(stride["until"])
        where = "until" if legacy else f"strides[{i}].until"
        if until < start:
            raise ValueError(f"{where}: {until} is below the previous stride's end {start}")
        if (until - start) % every:
            raise ValueError(f"{where}: {until} is not {start} plus a multiple of every ({every}), so it "
                             f"would not be an evaluation step")
        start = until
    return {"strides": strides, "every_after": int(schedule.get("every_after", DEFAULT_EVERY_AFTER))}


def _segments(schedule: dict[str, Any]) -> Iterator[tuple[int, int, int | None]]:
    """(start, every, end) of each stride, the last one open-ended (end None)."""
    start = 0
    for stride in normalize_schedule(schedule)["strides"]:
        yield start, int(stride["every"]), int(stride["until"])
        start = int(stride["until"])
    yield start, int(schedule.get("every_after", DEFAULT_EVERY_AFTER)), None


def is_eval_step(step: int, schedule: dict[str, Any]) -> bool:
    """Whether accuracies are measured after ``step`` updates."""
    for start, every, end in _segments(schedule):
        if step > start and (end is None or step <= end):
            return (step - start) % every == 0
    return False


def eval_steps(start: int, end: int, schedule: dict[str, Any]) -> list[int]:
    """The evaluation steps in (start, end], in order."""
    steps: list[int] = []
    for lo, every, hi in _segments(schedule):
        top = end if hi is None else min(hi, end)
        first = lo + every * max(1, -(-(start + 1 - lo) // every))  # first stride point above start
        steps.extend(range(first, top + 1, every))
    return steps


def strides_of(schedule: dict[str, Any]) -> list[int]:
    """Every stride of the schedule, ``every_after`` included (for checks such as epoch alignment)."""
    return [every for _, every, _ in _segments(schedule)]
