"""The ``landscape`` verb's arguments, kept apart from the torch code of ``grokking.landscape`` so
that building the command line (every job's first second) does not import torch."""

from __future__ import annotations

import argparse
import json

NORMALIZATIONS = ("filter", "tensor")  # filter: Li et al. 2018; tensor: 003's code (one unit-norm tensor each)


def run(args: argparse.Namespace) -> None:
    """Loss landscapes around every cell's final parameters (paper 003, section 3.3)."""
    import torch

    from grokking.landscape import write_landscapes

    torch.set_num_threads(args.threads)
    write_landscapes(json.loads(args.study), args.histories, args.dataset, args.cells, args.out,
                     args.span, args.points, args.rows, args.seed, args.normalization)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """The ``landscape`` verb, for cli.build_parser."""
    p = verbs.add_parser("landscape", help=run.__doc__)
    p.add_argument("--study", required=True, help="the study's settings, as JSON")
    p.add_argument("--histories", nargs="+", required=True, help="the shards' history files (with final_params)")
    p.add_argument("--dataset", required=True, help="results/<study>/dataset.pt")
    p.add_argument("--cells", required=True, help="results/<study>/cells.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--span", type=float, default=1.0, help="alpha, beta in [-span, span] (public code: 1)")
    p.add_argument("--points", type=int, default=21, help="grid points per axis (public code: 21)")
    p.add_argument("--rows", type=int, default=1024, help="equations of each split measured; 0 = all "
                   "(public code: 2 batches of 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the two random directions")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default="filter",
                   help="filter: Li et al.'s per-row scaling; tensor: the public code's unit-norm tensors")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=run)
