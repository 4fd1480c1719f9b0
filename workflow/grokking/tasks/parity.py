"""Sparse (n, k)-parity (paper 002): a one-hidden-layer ReLU network; its clock is epochs.

The samples, model and losses are ``grokking.parity``; a shard trains in ``tasks.parity_trainer``.
Each study owns its data file (one training and test set per data seed). Budget, evaluation and the
threshold steps T_train / T_val of a parity study count epochs, as the paper's figures do.
"""

from __future__ import annotations

from typing import Any

from grokking.tasks import Task


def dataset(name: str, study: dict[str, Any]) -> str:
    return f"results/{name}/dataset.pt"


def prepare(settings: dict[str, Any], out: str) -> None:
    """Write the training and test samples of every data seed of the study."""
    import logging
    from dataclasses import asdict

    from grokking import io
    from grokking.parity import parity_split

    splits = {int(seed): parity_split(settings["n"], settings["k"], settings["n_train"], settings["n_test"],
                                      int(seed)) for seed in settings["data_seeds"]}
    io.save_torch({seed: asdict(split) for seed, split in splits.items()}, out)
    for seed, split in splits.items():
        logging.getLogger("grokking").info("data seed %d: %d train, %d test samples, %.2f of train labels +1",
                                           seed, len(split.y_train), len(split.y_test),
                                           float((split.y_train > 0).float().mean()))


def check(study: dict[str, Any]) -> None:
    """The parity reads coordinates that exist, the budget is an evaluation epoch, snapshots fall on
    evaluation epochs within the budget (the schema refuses another task's grid axes)."""
    if study["k"] > study["n"]:
        raise ValueError(f"k: {study['k']} coordinates of an input of n = {study['n']}")
    every = study["eval_every"]
    if study["budget"] % every:
        raise ValueError(f"budget: {study['budget']} epochs is not a multiple of eval_every {every}, so the "
                         f"final accuracies would never be measured")
    for epoch in study["snapshot_epochs"]:
        if epoch > study["budget"] or epoch % every:
            raise ValueError(f"snapshot_epochs: epoch {epoch} is not an evaluation epoch within the budget "
                             f"({study['budget']} epochs, every {every})")
    optimizer = study["optimizer"]
    if optimizer["name"] == "sgd" and optimizer["nesterov"] and optimizer["momentum"] <= 0:
        raise ValueError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0")


def train(study, cells, data_path, settings, resume):
    from grokking import io
    from grokking.parity import ParitySplit
    from grokking.tasks.parity_trainer import train_parity_shard

    splits = {int(k): ParitySplit(**v) for k, v in io.load_torch(data_path).items()}
    return train_parity_shard(study, cells, splits, settings, resume=resume)


def label(study: dict[str, Any]) -> str:
    return f"({study['n']}, {study['k']})-parity, width {study['width']}"


TASK = Task("parity", dataset, check, train, label,
            data_keys=("n", "k", "n_train", "n_test", "data_seeds"), prepare=prepare, clock="epochs")
