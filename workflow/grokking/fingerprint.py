"""Fingerprints of a results folder: proof that a refactoring changed no result.

``python -m grokking fingerprint results --out before.json`` records the SHA-256 of every study's
tables (``cells.csv``, ``cells_extended.csv``, ``phases.csv``, ``phases_extended.csv``); after the
change, ``python -m grokking fingerprint results --check before.json`` rebuilds them and names every
file that differs, is missing or is new. Tables are compared byte for byte: same config, same results
(DESIGN section 4), so any difference is a change of results, not noise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TABLES = ("cells.csv", "cells_extended.csv", "phases.csv", "phases_extended.csv")


def fingerprints(results: str | Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every study table under ``results`` (one level of study folders)."""
    root = Path(results)
    found = {}
    for name in TABLES:
        for path in sorted(root.glob(f"*/{name}")):
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(found.items()))


def differences(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """One line per table that differs, disappeared or appeared; empty when all are identical."""
    lines = [f"differs: {p}" for p in sorted(recorded.keys() & now.keys()) if recorded[p] != now[p]]
    lines += [f"missing: {p}" for p in sorted(recorded.keys() - now.keys())]
    lines += [f"new: {p}" for p in sorted(now.keys() - recorded.keys())]
    return lines
