"""The ledger's two verbs: ``ledger-rows`` (the claims one figure tests, from that figure's files)
and ``ledger`` (every figure's rows gathered into ``ledger.{csv,md}`` and the README's summary)."""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from grokking import io
from grokking.ledger import COLUMNS, PAPERS, ledger_markdown, ledger_table, measure_figure, verdict_counts

log = logging.getLogger(__name__)


def figure_rows(args: argparse.Namespace) -> None:
    """Measure and judge the claims one figure tests, from the files and options its plot reads."""
    files: dict[str, list[str]] = {}
    for item in args.input:
        name, _, path = item.partition("=")
        files.setdefault(name, []).append(path)
    table = measure_figure(args.figure, files, json.loads(args.options), args.preset)
    io.write_csv(table, args.out)
    for row in table.itertuples(index=False):
        log.info("%s: %s (%s)", row.key, row.verdict, row.ours)


def short(text: str, limit: int = 120) -> str:
    """A measured text cut to ``limit`` characters at a word boundary."""
    return text if len(text) <= limit else text[:limit - 3].rsplit(" ", 1)[0].rstrip(",;(") + "..."


def what_reproduces(table: pd.DataFrame) -> str:
    """The README's short section: per paper, the verdict counts and each claim in one line (the
    verdict, the preset it was measured at, the claim, and the head of our number)."""
    lines = []
    for paper, title in PAPERS.items():
        rows = table[table["paper"] == paper]
        if rows.empty:
            continue
        lines += [f"**{paper}: {title}**: {verdict_counts(rows)}.", ""]
        for r in rows.itertuples(index=False):
            ours = short(r.ours) or "-"
            lines.append(f"- **{r.verdict}** ({r.preset}, {r.where}): {r.claim} Ours: {ours}"
                         + ("" if ours.endswith(".") else "."))
        lines.append("")
    return "\n".join(lines)


def gather(args: argparse.Namespace) -> None:
    """Every figure's claim rows, in registry order, as CSV and Markdown, and the README summary."""
    frames = [pd.read_csv(path, keep_default_na=False, dtype=str) for path in args.rows]
    table = ledger_table(frames, args.built, args.preset).reindex(columns=list(COLUMNS))
    io.write_csv(table, args.csv)
    with io.atomic_path(args.markdown) as tmp:
        tmp.write_text(ledger_markdown(table))
    with io.atomic_path(args.summary) as tmp:
        tmp.write_text(what_reproduces(table))
    log.info("ledger of %d claims: %s", len(table), verdict_counts(table))


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("ledger-rows", help=figure_rows.__doc__)
    p.add_argument("--figure", required=True, help="the config figure whose claims to measure")
    p.add_argument("--input", nargs="*", default=[], metavar="NAME=PATH", help="the figure's input files")
    p.add_argument("--options", default="{}", help="JSON: the figure kind's options")
    p.add_argument("--preset", required=True, help="the config's preset (full, coarse, demo, smoke)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=figure_rows)

    p = verbs.add_parser("ledger", help=gather.__doc__)
    p.add_argument("--rows", nargs="*", default=[], help="each built figure's rows (ledger-rows' CSV)")
    p.add_argument("--built", nargs="*", default=[], help="the figures this config builds")
    p.add_argument("--preset", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--summary", required=True, help="the README's 'What reproduces' section (Markdown)")
    p.set_defaults(func=gather)
