"""The report's toy model: addition of two of p tokens through learned embeddings (section 3)."""

from __future__ import annotations

from typing import Any

from grokking.tasks import Task


def dataset(name: str, study: dict[str, Any]) -> str:
    """Each toy study writes its own splits (one per data seed)."""
    return f"results/{name}/dataset.pt"


def prepare(settings: dict[str, Any], out: str) -> None:
    """Write every train/validation split (and regression targets) of the study's data seeds."""
    import logging
    from dataclasses import asdict

    from grokking import io
    from grokking.data import toy_dataset

    splits = toy_dataset(settings)
    io.save_torch({seed: asdict(split) for seed, split in splits.items()}, out)
    for seed, split in splits.items():
        logging.getLogger("grokking").info(
            "data seed %d: %d train, %d validation pairs; validation %s", seed, len(split.y_train),
            len(split.y_val), split.x_val.tolist())


def check(study: dict[str, Any]) -> None:
    n_pairs = study["p"] * (study["p"] + 1) // 2
    if study["train_size"] >= n_pairs:
        raise ValueError(f"train_size: {study['train_size']} leaves no validation pairs out of {n_pairs}")


def train(study, cells, data_path, settings, resume):
    from grokking import io
    from grokking.data import ToySplit
    from grokking.tasks.toy_trainer import train_toy_shard

    splits = {int(k): ToySplit(**v) for k, v in io.load_torch(data_path).items()}
    return train_toy_shard(study, cells, settings, resume=resume, splits=splits)


def label(study: dict[str, Any]) -> str:
    return study["objective"]


TASK = Task("toy", dataset, check, train, label,
            data_keys=("p", "train_size", "regression_dim", "data_seeds"), prepare=prepare)
