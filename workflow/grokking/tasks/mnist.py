"""MNIST: the report's MLP on a 1000-image subset (section 3, Figs. 2, 5, 6)."""

from __future__ import annotations

from typing import Any

from grokking.schedule import is_eval_step, normalize_schedule, strides_of
from grokking.tasks import Task


def dataset(name: str, study: dict[str, Any]) -> str:
    """One file per (data seed, subset size): MNIST studies with the same subset share it."""
    return f"results/data/mnist_seed{study['data_seeds'][0]}_n{study['subset_size']}.pt"


def check(study: dict[str, Any]) -> None:
    """The evaluation schedule is well formed (and written back in its normal form), budgets lie on
    it, running train accuracy is read at epoch ends. A batch larger than the subset is the whole
    subset, as a DataLoader's only batch (003 Table 3's batch 1024 on 1000 images)."""
    try:
        study["eval"] = schedule = normalize_schedule(study["eval"])
    except ValueError as error:
        raise ValueError(f"eval.{error}") from None
    described = ", ".join(f"every {s['every']} up to {s['until']}" for s in schedule["strides"])
    for key in ("budget", "extended_budget"):
        if key in study and not is_eval_step(study[key], schedule):
            raise ValueError(f"{key}: {study[key]} is not an evaluation step ({described}, then every "
                             f"{schedule['every_after']}), so its accuracies would never be measured")
    steps_per_epoch = -(-study["subset_size"] // study["batch_size"])
    if study["train_accuracy"] == "running" and any(s % steps_per_epoch for s in strides_of(schedule)):
        raise ValueError(f"train_accuracy: running accuracy is read at epoch ends, but eval has strides "
                         f"{strides_of(schedule)} that are not multiples of the {steps_per_epoch} steps "
                         f"of an epoch")


def train(study, cells, data_path, settings, resume):
    from grokking import io
    from grokking.mnist import MnistData
    from grokking.tasks.mnist_trainer import train_mnist_shard

    data = MnistData.from_dict(io.load_torch(data_path))
    return train_mnist_shard(study, cells, data, settings, resume=resume)


def label(study: dict[str, Any]) -> str:
    return "MNIST"


TASK = Task("mnist", dataset, check, train, label)
