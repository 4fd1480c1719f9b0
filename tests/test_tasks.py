"""The task registry: every study's task is registered and answers for its data, checks and labels."""

import pytest

from grokking.tasks import TASKS, task_of
from tests.conftest import load_config


def test_every_study_of_the_shipped_config_has_a_registered_task():
    studies = load_config()["studies"]
    assert {study["task"] for study in studies.values()} <= set(TASKS)
    assert task_of(studies["mnist"]).dataset("mnist", studies["mnist"]) == "results/data/mnist_seed0_n1000.pt"
    assert task_of(studies["mnist_extended"]).dataset("x", studies["mnist_extended"]) == (
        "results/data/mnist_seed0_n1000.pt")  # MNIST studies share one subset file
    assert task_of(studies["toy_cls"]).dataset("toy_cls", studies["toy_cls"]) == "results/toy_cls/dataset.pt"
    assert [task_of(studies[s]).label(studies[s]) for s in ("toy_cls", "toy_regr", "mnist")] == [
        "classification", "regression", "MNIST"]


def test_task_checks_name_the_key_they_refuse():
    study = dict(load_config()["studies"]["toy_cls"], train_size=55)
    with pytest.raises(ValueError, match="^train_size: 55 leaves no validation pairs out of 55$"):
        task_of(study).check(study)
