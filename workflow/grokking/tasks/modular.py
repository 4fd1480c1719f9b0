"""Modular arithmetic (Power et al. 2022): papers 001, 003 and 004; a decoder transformer, an MLP or an LSTM.

The equations, their split and the model are ``grokking.modular``; a shard trains in
``tasks.modular_trainer``. Each study owns its data file (one split per data seed).
"""

from __future__ import annotations

from typing import Any

from grokking.schedule import is_eval_step, normalize_schedule
from grokking.tasks import Task

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def dataset(name: str, study: dict[str, Any]) -> str:
    return f"results/{name}/dataset.pt"


def prepare(settings: dict[str, Any], out: str) -> None:
    """Write the train / validation equations of every data seed of the study."""
    import logging
    from dataclasses import asdict

    from grokking import io
    from grokking.modular import modular_split

    splits = {int(seed): modular_split(settings["p"], settings["operation"], settings["arity"],
                                       settings["train_fraction"], int(seed))
              for seed in settings["data_seeds"]}
    io.save_torch({seed: asdict(split) for seed, split in splits.items()}, out)
    for seed, split in splits.items():
        logging.getLogger("grokking").info("data seed %d: %d train, %d validation equations", seed,
                                           len(split.y_train), len(split.y_val))


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def check(study: dict[str, Any]) -> None:
    """Division needs a prime modulus, K-ary equations are sums, both splits are non-empty, and the
    budget is an evaluation step. A batch larger than the training split is the whole split (a
    DataLoader's one short batch), so a sweep of batch sizes x moduli needs no holes."""
    p, arity, operation = study["p"], study["arity"], study["operation"]
    if operation == "div" and not _is_prime(p):
        raise ValueError(f"p: {p} is not prime, so division (x * y^-1 mod p) is not defined for every y")
    if arity > 2 and operation != "add":
        raise ValueError(f"operation: {operation} with arity {arity}; equations of more than two "
                         f"operands are sums (operation: add)")
    n = p**arity - (p if operation == "div" else 0)
    n_train = int(study["train_fraction"] * n)
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction: {study['train_fraction']} of {n} equations leaves "
                         f"{n_train} to train and {n - n_train} to validate")
    model = study["model"]
    if model["architecture"] != "transformer" and model["layernorm"] != "pre":
        raise ValueError(f"model.layernorm: {model['layernorm']} is a transformer setting, and "
                         f"model.architecture is {model['architecture']}")
    if model["architecture"] != "mlp" and study["activations"] != ["gelu"]:
        raise ValueError(f"activations: {study['activations']}; only the mlp architecture takes relu")
    if "noise" in study["grid"] and model["architecture"] != "transformer":
        raise ValueError(f"grid.noise is added to a transformer's input embeddings; model.architecture "
                         f"is {model['architecture']}")
    if model["architecture"] == "lstm" and model["dropout"] and model["layers"] == 1:
        raise ValueError("model.dropout acts between LSTM layers, and model.layers is 1")
    if model["architecture"] == "transformer" and model["width"] % model["heads"]:
        raise ValueError(f"model.width: {study['model']['width']} is not a multiple of model.heads "
                         f"{study['model']['heads']}")
    try:
        study["eval"] = schedule = normalize_schedule(study["eval"])
    except ValueError as error:
        raise ValueError(f"eval.{error}") from None
    for key in ("budget", "extended_budget"):
        if key in study and not is_eval_step(study[key], schedule):
            raise ValueError(f"{key}: {study[key]} is not an evaluation step of eval, so its accuracies "
                             f"would never be measured")


def train(study, cells, data_path, settings, resume):
    from grokking import io
    from grokking.modular import ModularSplit
    from grokking.tasks.modular_trainer import train_modular_shard

    splits = {int(k): ModularSplit(**v) for k, v in io.load_torch(data_path).items()}
    return train_modular_shard(study, cells, splits, settings, resume=resume)


def label(study: dict[str, Any]) -> str:
    operands = " + ".join(f"x{i}" for i in range(1, study["arity"] + 1)) if study["arity"] > 2 else (
        f"x {SYMBOLS[study['operation']]} y")
    architecture = study.get("model", {}).get("architecture", "transformer")
    model = "" if architecture == "transformer" else f", {architecture.upper()}"
    return f"{operands} mod {study['p']}{model}"


TASK = Task("modular", dataset, check, train, label,
            data_keys=("p", "operation", "arity", "train_fraction", "data_seeds"), prepare=prepare)
