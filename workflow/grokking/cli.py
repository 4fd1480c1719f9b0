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
from grokking.phases import classify_cells
from grokking.plots import phase_diagrams

log = logging.getLogger("grokking")


def prepare_toy(args: argparse.Namespace) -> None:
    """Write every train/validation split (and regression targets) a toy study needs."""
    study = json.loads(args.study)
    splits = toy_dataset(study)
    io.save_torch({seed: asdict(split) for seed, split in splits.items()}, args.out)
    for seed, split in splits.items():
        log.info("data seed %d: %d train, %d validation pairs; validation %s", seed,
                 len(split.y_train), len(split.y_val), split.x_val.tolist())


def train(args: argparse.Namespace) -> None:
    """Train one shard and write its metrics table, history and end state."""
    spec = json.loads(args.spec)
    torch.set_num_threads(args.threads)
    splits = {int(k): ToySplit(**v) for k, v in io.load_torch(args.data).items()}
    cells = pd.DataFrame(spec["cells"])
    settings = EngineSettings(
        device=str(resolve_device(args.device or spec["engine"]["device"])),
        compile=spec["engine"]["compile"],
        check_every=spec["engine"]["check_every"],
    )
    log.info("training %d cells for up to %d steps on %s with %d threads",
             len(cells), spec["study"]["budget"], settings.device, args.threads)
    started = time.perf_counter()
    result = train_toy_shard(spec["study"], cells, settings, splits=splits)
    seconds = time.perf_counter() - started
    cell_steps = int(result.metrics["steps_run"].sum())
    log.info("done in %.1f s: %d cell-steps, %.0f cell-steps/s", seconds, cell_steps,
             cell_steps / seconds)
    metrics = result.metrics.assign(shard=args.shard)
    io.save_torch(result.history, args.history)
    io.save_torch(result.end_state, args.state)
    io.write_csv(metrics, args.metrics)  # written last: it marks the shard as complete


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
    p.add_argument("--shard", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="overrides engine.device")
    p.add_argument("--metrics", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--state", required=True)
    p.set_defaults(func=train)

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
