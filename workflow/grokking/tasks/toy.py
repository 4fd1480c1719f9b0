"""The report's toy model: addition of two of p tokens through learned embeddings (section 3)."""

from __future__ import annotations

from typing import Any

from grokking.tasks import Task


def dataset(name: str, study: dict[str, Any]) -> str:
    """Each toy study writes its own splits (one per data seed)."""
    return f"results/{name}/dataset.pt"


def check(study: dict[str, Any]) -> None:
    n_pairs = study["p"] * (study["p"] + 1) // 2
    if study["train_size"] >= n_pairs:
        raise ValueError(f"train_size: {study['train_size']} leaves no validation pairs out of {n_pairs}")


def train(study, cells, data_path, settings, resume):
    from grokking import io
    from grokking.data import ToySplit
    from grokking.engine import train_toy_shard

    splits = {int(k): ToySplit(**v) for k, v in io.load_torch(data_path).items()}
    return train_toy_shard(study, cells, settings, resume=resume, splits=splits)


def label(study: dict[str, Any]) -> str:
    return study["objective"]


TASK = Task("toy", dataset, check, train, label)
