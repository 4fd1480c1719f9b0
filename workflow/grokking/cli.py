"""The verbs the Snakemake rules run: ``python -m grokking <verb> ...``.

Each verb reads files and JSON settings, does one job and writes its outputs atomically, so a job
runs the same on a laptop and on a SLURM node and can be tested on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import pandas as pd

from grokking import io, landscape_verb, shard_files, tables
from grokking.claims import claims_markdown, claims_table
from grokking.grid import shard_cell_ids
from grokking.ledger import verbs as ledger_verbs
from grokking.phases import classify_cells
from grokking.tasks import task_of

log = logging.getLogger("grokking")

# The plot verb imports matplotlib (through the figure kind's draw) inside the verb: a second of
# start-up that the many training jobs of a diagram should not pay. Likewise torch (2-3 s) is
# imported only by the verbs that train or read tensors: tables, phases and claims start without it.


def prepare(args: argparse.Namespace) -> None:
    """Write a study's own data file from the settings that define it, as its task prepares it."""
    settings = json.loads(args.study)
    task_of(settings).prepare(settings, args.out)


def prepare_mnist_data(args: argparse.Namespace) -> None:
    """Load MNIST through torchvision from --root and write the report's training subset once."""
    from grokking.mnist import prepare_mnist

    data = prepare_mnist(args.root, args.seed, args.size, download=args.download)
    io.save_torch(data.to_dict(), args.out)
    log.info("MNIST from %s: %d training images (seed %d; first indices %s), %d validation images",
             args.root, len(data.train_labels), args.seed, data.indices[:5].tolist(), len(data.val_labels))


def _train_and_write(args: argparse.Namespace, spec: dict, cells: pd.DataFrame, resume=None) -> None:
    """Train ``cells`` (from scratch or from ``resume``) and write metrics, history, end state."""
    import torch

    from grokking.trainer import EngineSettings, resolve_device

    torch.set_num_threads(args.threads)
    study = spec["study"]
    settings = EngineSettings(
        device=str(resolve_device(args.device or spec["engine"]["device"])),
        compile=spec["engine"]["compile"],
        check_every=spec["engine"]["check_every"],
    )
    start = 0 if resume is None else resume["step"]
    log.info("training %d %s cells from step %d up to %d on %s with %d threads",
             len(cells), study["task"], start, study["budget"], settings.device, args.threads)
    started = time.perf_counter()
    result = task_of(study).train(study, cells, args.data, settings, resume)
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
    resume = shard_files.load_resume_state(args.resume, list(cells["cell_id"]))
    _train_and_write(args, spec, cells.reset_index(drop=True), resume=resume)


def select_reruns(args: argparse.Namespace) -> None:
    """The cells to continue: not converged at the base budget (memorization, confusion)."""
    chosen = tables.select_reruns(pd.read_csv(args.cells), pd.read_csv(args.phases))
    io.write_csv(chosen, args.out)
    log.info("%d cells continue", len(chosen))


def merge_extended(args: argparse.Namespace) -> None:
    """Every cell at the extended budget: continued cells' new results, the others' old ones."""
    continued = None
    if args.continued:
        reruns = pd.read_csv(args.reruns)
        expected = {shard: list(group["cell_id"]) for shard, group in reruns.groupby("shard")}
        continued = shard_files.read_shards_metrics(args.continued, expected)
    io.write_csv(tables.merge_extended(pd.read_csv(args.cells), continued, args.budget), args.out)


def phase_changes(args: argparse.Namespace) -> None:
    """Cells whose phase differs between the base and the extended budget."""
    changed = tables.phase_changes(pd.read_csv(args.base), pd.read_csv(args.extended))
    io.write_csv(changed, args.out)
    log.info("%d cells changed phase: %s", len(changed),
             (changed["phase_base"] + " -> " + changed["phase_extended"]).value_counts().to_dict())


def aggregate(args: argparse.Namespace) -> None:
    """Concatenate shard metrics into one table per study, each checked to hold its shard's cells."""
    expected = shard_cell_ids(json.loads(args.layout))
    cells = tables.aggregate_cells([shard_files.read_shards_metrics(args.metrics, expected)])
    io.write_csv(cells, args.out)
    log.info("%d cells, %d diverged", len(cells), int(cells["diverged"].sum()))


def classify(args: argparse.Namespace) -> None:
    cells = pd.read_csv(args.cells, dtype={"t_train": "Int64", "t_val": "Int64"})
    phases = classify_cells(cells, args.gap)
    io.write_csv(phases, args.out)
    log.info("phases: %s", phases["phase"].value_counts().to_dict())


def fingerprint(args: argparse.Namespace) -> None:
    """Record the SHA-256 of every study table under a results folder, or check them against a record."""
    from grokking.fingerprint import differences, fingerprints

    now = fingerprints(args.results)
    if args.out:
        io.write_json(now, args.out)
        log.info("%d tables recorded in %s", len(now), args.out)
    if args.check:
        problems = differences(json.loads(open(args.check).read()), now)
        for line in problems:
            log.error(line)
        if problems:
            raise SystemExit(f"error: {len(problems)} of the tables differ from {args.check}")
        log.info("all %d tables are byte-identical to %s", len(now), args.check)


def plot(args: argparse.Namespace) -> None:
    """Draw one figure of a registered kind from its named input files and its options."""
    from grokking.figures import figure_kind

    files: dict[str, list[str]] = {}
    for item in args.input:
        name, _, path = item.partition("=")
        files.setdefault(name, []).append(path)
    figure_kind(args.kind).draw(files, json.loads(args.options), args.pdf, args.png)


def summarize_claims(args: argparse.Namespace) -> None:
    """One row per phase diagram: phase counts and the report's claims, computed from the results."""
    diagrams = {}
    for item in args.diagram:
        name, _, path = item.partition("=")
        diagrams[name] = pd.read_csv(path)
    table = claims_table(diagrams, mnist=set(args.mnist))
    io.write_csv(table, args.csv)
    with io.atomic_path(args.markdown) as tmp:
        tmp.write_text(claims_markdown(table))
    log.info("claims of %d diagrams written", len(table))


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

    p = verbs.add_parser("prepare", help=prepare.__doc__)
    p.add_argument("--study", required=True, help="the settings that define the data, as JSON")
    p.add_argument("--out", required=True)
    p.set_defaults(func=prepare)

    p = verbs.add_parser("prepare-mnist", help=prepare_mnist_data.__doc__)
    p.add_argument("--root", required=True, help="torchvision root: files in ROOT/MNIST/raw/")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, required=True, help="data seed of the subset")
    p.add_argument("--size", type=int, required=True, help="training images in the subset")
    p.add_argument("--out", required=True)
    p.set_defaults(func=prepare_mnist_data)

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
    p.add_argument("--reruns", required=True, help="the continued cells and their shards (select-reruns output)")
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=merge_extended)

    p = verbs.add_parser("phase-changes", help=phase_changes.__doc__)
    p.add_argument("--base", required=True)
    p.add_argument("--extended", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=phase_changes)

    p = verbs.add_parser("plot", help=plot.__doc__)
    p.add_argument("kind", help="a registered figure kind (grokking.figures)")
    p.add_argument("--input", nargs="*", default=[], metavar="NAME=PATH", help="the figure's input files")
    p.add_argument("--options", default="{}", help="JSON: the kind's drawing options (titles, gap, ...)")
    p.add_argument("--pdf", required=True)
    p.add_argument("--png", required=True)
    p.set_defaults(func=plot)

    p = verbs.add_parser("claims", help=summarize_claims.__doc__)
    p.add_argument("--diagram", nargs="+", required=True, metavar="NAME=PHASES_CSV")
    p.add_argument("--mnist", nargs="*", default=[], help="diagram names that are MNIST (claim 3)")
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.set_defaults(func=summarize_claims)

    p = verbs.add_parser("aggregate", help=aggregate.__doc__)
    p.add_argument("--metrics", nargs="+", required=True, help="files named <shard>.metrics.csv")
    p.add_argument("--layout", required=True, help="JSON: what decides the study's cells and shards")
    p.add_argument("--out", required=True)
    p.set_defaults(func=aggregate)

    p = verbs.add_parser("fingerprint", help=fingerprint.__doc__)
    p.add_argument("results", help="the results folder (e.g. results)")
    p.add_argument("--out", help="write the fingerprints here (JSON)")
    p.add_argument("--check", help="compare with fingerprints recorded earlier (JSON)")
    p.set_defaults(func=fingerprint)

    landscape_verb.add_parser(verbs)
    ledger_verbs.add_parser(verbs)

    p = verbs.add_parser("classify", help="label every cell with its phase")
    p.add_argument("--cells", required=True)
    p.add_argument("--gap", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=classify)

    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except io.DamagedFileError as error:
        raise SystemExit(f"error: {error}") from None  # one line in the job's log, no traceback


if __name__ == "__main__":
    main()
