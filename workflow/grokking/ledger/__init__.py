"""One ledger of every claim the five papers make, each computed from the figure that tests it.

A claim names the figure whose results test it (a key of ``config.yaml``'s ``figures``), a measure
that reads exactly that figure's input files and drawing options, and a verdict rule written next to
it (``grokking.ledger.verdicts``). The workflow computes each figure's claim rows in their own job
(``results/ledger/<figure>.csv``), so changing one study's setting recomputes the rows of the figures
that draw it and nothing else; ``results/summary/ledger.{csv,md}`` then gathers them.

Claims live in one module per paper (``p000`` ... ``p004``); a new claim is one ``Claim`` there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd

from grokking.ledger.verdicts import INCONCLUSIVE, Measured, Rule

Inputs = dict[str, list[str]]

PAPERS = {
    "000": '[Re] "Towards Understanding Grokking" (ReScience C, 2023)',
    "001": "Grokking on modular arithmetic: transformers, MLPs and LSTMs (course report)",
    "002": "Grokking on sparse parity (course blog)",
    "003": '"Explaining grokking" (course report)',
    "004": "A review of grokking papers",
}
# Verdict of a claim whose figure the config does not build.
NOT_RUN = "not run"
COLUMNS = ("paper", "where", "claim", "quantity", "paper_value", "ours", "size", "preset", "verdict", "rule",
           "figure", "key")


@dataclass(frozen=True)
class Claim:
    """One claim of one paper.

    - ``key``: a short unique name ("003-band");
    - ``where``: the paper's section, figure or table; ``claim``: the claim in one sentence;
    - ``quantity``: what we measure; ``paper_value``: the paper's number, where it gives one;
    - ``figure``: the config figure whose results test it;
    - ``measure(files, options)``: reads that figure's inputs and options and returns a ``Measured``;
    - ``rule``: the verdict rule.
    """

    key: str
    paper: str
    where: str
    claim: str
    quantity: str
    paper_value: str
    figure: str
    measure: Callable[[Inputs, dict[str, Any]], Measured]
    rule: Rule


def _registry() -> tuple[Claim, ...]:
    from grokking.ledger import p000, p001, p002, p003, p004

    claims = (*p000.CLAIMS, *p001.CLAIMS, *p002.CLAIMS, *p003.CLAIMS, *p004.CLAIMS)
    keys = [c.key for c in claims]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"ledger claims share a key: {', '.join(duplicated)}")
    unknown = sorted({c.paper for c in claims} - set(PAPERS))
    if unknown:
        raise ValueError(f"ledger claims name unknown papers: {', '.join(unknown)}")
    return claims


CLAIMS = _registry()


def claims_of(figure: str) -> list[Claim]:
    """The claims a figure tests, in ledger order."""
    return [c for c in CLAIMS if c.figure == figure]


def figures_with_claims() -> list[str]:
    """Every figure some claim is tested on, in ledger order."""
    return list(dict.fromkeys(c.figure for c in CLAIMS))


def paper_of(figure: str) -> str:
    """The paper a figure belongs to: its claims' paper, else its ``p00N_`` prefix, else 000."""
    for claim in CLAIMS:
        if claim.figure == figure:
            return claim.paper
    prefix = figure[1:4]
    return prefix if figure.startswith("p") and prefix in PAPERS else "000"


def paper_section(figure: str) -> str:
    """The HTML report's category of a figure and its claims: '003: "Explaining grokking" ...'."""
    paper = paper_of(figure)
    return f"{paper}: {PAPERS[paper]}"


def _row(claim: Claim, measured: Measured | None, preset: str, error: str = "") -> dict[str, Any]:
    verdict = NOT_RUN if measured is None else claim.rule(measured)
    return {"paper": claim.paper, "where": claim.where, "claim": claim.claim, "quantity": claim.quantity,
            "paper_value": claim.paper_value, "ours": error or ("" if measured is None else measured.text),
            "size": "" if measured is None else measured.size, "preset": preset, "verdict": verdict,
            "rule": claim.rule.text, "figure": claim.figure, "key": claim.key}


def measure_figure(figure: str, files: Inputs, options: dict[str, Any], preset: str) -> pd.DataFrame:
    """The ledger rows of one figure: each of its claims measured on the figure's files and judged.

    A measure that cannot be computed from these results (e.g. no run reached the threshold and the
    measure needs one) returns NaN and the rule says inconclusive; a bug raises.
    """
    rows = [_row(claim, claim.measure(files, options), preset) for claim in claims_of(figure)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ledger_table(figure_rows: Iterable[pd.DataFrame], built: Iterable[str], preset: str) -> pd.DataFrame:
    """Every claim in registry order: measured rows where the figure was built, ``not run`` rows for
    claims whose figure this config does not draw."""
    measured = {row["key"]: row for frame in figure_rows for row in frame.to_dict("records")}
    built = set(built)
    rows = []
    for claim in CLAIMS:
        if claim.key in measured:
            rows.append(measured[claim.key])
        elif claim.figure not in built:
            rows.append(_row(claim, None, preset))
        else:
            raise ValueError(f"claim {claim.key}: figure {claim.figure} is built but its rows lack the claim")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def verdict_counts(table: pd.DataFrame) -> str:
    """'12 hold, 5 do not hold, 8 inconclusive, 3 not run'."""
    counts = table["verdict"].value_counts()
    plural = {"holds": "hold", "does not hold": "do not hold", INCONCLUSIVE: INCONCLUSIVE, NOT_RUN: NOT_RUN}
    return ", ".join(f"{counts.get(verdict, 0)} {phrase}" for verdict, phrase in plural.items())


def ledger_markdown(table: pd.DataFrame) -> str:
    """The ledger as Markdown: one section per paper, one row per claim."""
    presets = ", ".join(sorted(set(table["preset"])))
    lines = ["# Every claim of the five papers, checked", "",
             f"Computed from this workflow's results (preset: {presets}): {verdict_counts(table)}. "
             "Each verdict comes from the rule beside it, applied to the number in *ours*; *size* says what "
             "that number was measured on. At the demo and coarse presets a verdict says what those small "
             "runs show, not what the paper's sizes would.", ""]
    for paper, title in PAPERS.items():
        rows = table[table["paper"] == paper]
        if rows.empty:
            continue
        lines += [f"## {paper}: {title}", "", f"{verdict_counts(rows)}.", "",
                  "| where | claim | paper | ours | verdict | rule | size | figure |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples(index=False):
            lines.append("| " + " | ".join(_cell(v) for v in (r.where, r.claim, r.paper_value, r.ours,
                                                              f"**{r.verdict}**", r.rule, r.size, r.figure)) + " |")
        lines.append("")
    return "\n".join(lines)
