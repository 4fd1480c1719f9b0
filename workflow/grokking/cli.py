"""The verbs the Snakemake rules run: ``python -m grokking <verb> ...``.

Each verb reads files and JSON settings, does one job and writes its outputs atomically, so a job
runs the same on a laptop and on a SLURM node and can be tested on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from grokking import io
from grokking.data import ToySplit, toy_dataset
from grokking.engine import EngineSettings, resolve_device, train_toy_shard
from grokking.grid import CELL_COLUMNS
from grokking.phases import classify_cells
from grokking.plots import phase_diagrams, smooth_figure

log = logging.getLogger("grokking")


def prepare_toy(args: argparse.Namespace) -> None:
    """Write every train/validation split (and regression targets) a toy study needs."""
    study = json.loads(args.study)
    splits = toy_dataset(study)
    io.save_torch({seed: asdict(split) for seed, split in splits.items()}, args.out)
    for seed, split in splits.items():
        log.info("data seed %d: %d train, %d validation pairs; validation %s", seed,
                 len(split.y_train), len(split.y_val), split.x_val.tolist())


def _train_and_write(args: argparse.Namespace, spec: dict, cells: pd.DataFrame, resume=None) -> None:
    """Train ``cells`` (from scratch or from ``resume``) and write metrics, history, end state."""
    torch.set_num_threads(args.threads)
    splits = {int(k): ToySplit(**v) for k, v in io.load_torch(args.data).items()}
    settings = EngineSettings(
        device=str(resolve_device(args.device or spec["engine"]["device"])),
        compile=spec["engine"]["compile"],
        check_every=spec["engine"]["check_every"],
    )
    start = 0 if resume is None else resume["step"]
    log.info("training %d cells from step %d up to %d on %s with %d threads",
             len(cells), start, spec["study"]["budget"], settings.device, args.threads)
    started = time.perf_counter()
    result = train_toy_shard(spec["study"], cells, settings, resume=resume, splits=splits)
    seconds = time.perf_counter() - started
    cell_steps = int(result.metrics["steps_run"].sum()) - start * len(cells)
    log.info("done in %.1f s: %d cell-steps, %.0f cell-steps/s", seconds, cell_steps,
             cell_steps / seconds)
    io.save_torch(result.history, args.history)
    io.save_torch(result.end_state, args.state)
    io.write_csv(result.metrics.assign(shard=args.shard), args.metrics)  # last: marks completion


def train(args: argparse.Namespace) -> None:
    """Train one shard and write its metrics table, history and end state."""
    spec = json.loads(args.spec)
    _train_and_write(args, spec, pd.DataFrame(spec["cells"]))


def continue_shard(args: argparse.Namespace) -> None:
    """Continue a shard's selected cells from its saved end state up to the extended budget."""
    spec = json.loads(args.spec)
    reruns = pd.read_csv(args.reruns)
    cells = reruns[reruns["shard"] == args.shard].drop(columns="shard")
    _train_and_write(args, spec, cells.reset_index(drop=True), resume=io.load_torch(args.resume))


def select_reruns(args: argparse.Namespace) -> None:
    """The cells to continue: not converged at the base budget (memorization, confusion).

    Diverged cells are not continued (their state is NaN); converged cells keep their results,
    since with early stopping their T values cannot change.
    """
    cells = pd.read_csv(args.cells)
    phases = pd.read_csv(args.phases)[["cell_id", "phase"]]
    table = cells.merge(phases, on="cell_id", validate="one_to_one")
    chosen = table[table["phase"].isin(["memorization", "confusion"]) & ~table["diverged"]]
    io.write_csv(chosen[[*CELL_COLUMNS, "shard"]], args.out)
    log.info("%d of %d cells continue (%s)", len(chosen), len(table),
             chosen["phase"].value_counts().to_dict())


def merge_extended(args: argparse.Namespace) -> None:
    """Every cell at the extended budget: continued cells' new results, the others' old ones."""
    cells = pd.read_csv(args.cells)
    merged = cells.set_index("cell_id")
    if args.continued:
        new = pd.concat([pd.read_csv(p) for p in args.continued]).set_index("cell_id")
        columns = new.columns.intersection(merged.columns)
        merged.loc[new.index, columns] = new[columns]
    merged["budget"] = args.budget
    io.write_csv(merged.reset_index(), args.out)


def phase_changes(args: argparse.Namespace) -> None:
    """Cells whose phase differs between the base and the extended budget."""
    base = pd.read_csv(args.base)
    extended = pd.read_csv(args.extended)
    both = base.merge(extended[["cell_id", "t_train", "t_val", "phase"]], on="cell_id",
                      suffixes=("_base", "_extended"))
    changed = both[both["phase_base"] != both["phase_extended"]]
    io.write_csv(changed, args.out)
    log.info("%d cells changed phase: %s", len(changed),
             (changed["phase_base"] + " -> " + changed["phase_extended"]).value_counts().to_dict())


def aggregate(args: argparse.Namespace) -> None:
    """Concatenate shard metrics into one table per study."""
    cells = pd.concat([pd.read_csv(p) for p in args.metrics], ignore_index=True)
    cells = cells.sort_values(["activation", "data_seed", "model_seed", "lr", "wd"])
    io.write_csv(cells, args.out)
    log.info("%d cells, %d diverged", len(cells), int(cells["diverged"].sum()))


def classify(args: argparse.Namespace) -> None:
    cells = pd.read_csv(args.cells, dtype={"t_train": "Int64", "t_val": "Int64"})
    phases = classify_cells(cells, args.gap)
    io.write_csv(phases, args.out)
    log.info("phases: %s", phases["phase"].value_counts().to_dict())


def plot_phases(args: argparse.Namespace) -> None:
    tables = [pd.read_csv(p) for p in args.phases]
    phase_diagrams(tables, args.titles, args.pdf, args.png, suptitle=args.suptitle)


def plot_smooth(args: argparse.Namespace) -> None:
    smooth_figure(pd.read_csv(args.discrete), pd.read_csv(args.smooth), pd.read_csv(args.changes),
                  args.gap, args.pdf, args.png, title=args.title)


def _add_training_outputs(p: argparse.ArgumentParser) -> None:
    """Arguments shared by the verbs that train: which shard, where it runs, what it writes."""
    p.add_argument("--shard", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="overrides engine.device")
    p.add_argument("--metrics", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--state", required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokking", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("prepare-toy", help=prepare_toy.__doc__)
    p.add_argument("--study", required=True, help="the study's settings as JSON")
    p.add_argument("--out", required=True)
    p.set_defaults(func=prepare_toy)

    p = verbs.add_parser("train", help=train.__doc__)
    p.add_argument("--spec", required=True, help="JSON with study, engine and cells")
    p.add_argument("--data", required=True)
    _add_training_outputs(p)
    p.set_defaults(func=train)

    p = verbs.add_parser("continue", help=continue_shard.__doc__)
    p.add_argument("--spec", required=True, help="JSON with study (budget = extended) and engine")
    p.add_argument("--data", required=True)
    p.add_argument("--resume", required=True, help="the shard's saved end state")
    p.add_argument("--reruns", required=True, help="cells to continue (select-reruns output)")
    _add_training_outputs(p)
    p.set_defaults(func=continue_shard)

    p = verbs.add_parser("select-reruns", help=select_reruns.__doc__)
    p.add_argument("--cells", required=True)
    p.add_argument("--phases", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=select_reruns)

    p = verbs.add_parser("merge-extended", help=merge_extended.__doc__)
    p.add_argument("--cells", required=True)
    p.add_argument("--continued", nargs="*", default=[])
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=merge_extended)

    p = verbs.add_parser("phase-changes", help=phase_changes.__doc__)
    p.add_argument("--base", required=True)
    p.add_argument("--extended", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=phase_changes)

    p = verbs.add_parser("plot-smooth", help="discrete diagram beside the smooth extended one")
    p.add_argument("--discrete", required=True)
    p.add_argument("--smooth", required=True)
    p.add_argument("--changes", required=True)
    p.add_argument("--gap", type=int, required=True)
    p.add_argument("--title", default="")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.set_defaults(func=plot_smooth)

    p = verbs.add_parser("aggregate", help=aggregate.__doc__)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=aggregate)

    p = verbs.add_parser("classify", help="label every cell with its phase")
    p.add_argument("--cells", required=True)
    p.add_argument("--gap", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=classify)

    p = verbs.add_parser("plot-phases", help="draw discrete phase diagrams side by side")
    p.add_argument("--phases", nargs="+", required=True)
    p.add_argument("--titles", nargs="+", required=True)
    p.add_argument("--suptitle", default="")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.set_defaults(func=plot_phases)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
