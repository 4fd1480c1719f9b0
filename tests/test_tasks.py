"""The task registry: every study's task is registered and answers for its data, checks and labels."""

import json

import pytest
import torch

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


def test_a_study_with_its_own_data_is_prepared_by_its_task_from_its_data_settings(tmp_path):
    """The generic prepare rule runs `grokking prepare` with the task's data settings only: settings
    that do not define the data (learning rates, budget) never reach it, so they never rebuild it."""
    from grokking import io
    from grokking.cli import main
    from grokking.data import toy_dataset

    study = load_config()["studies"]["toy_cls"]
    settings = task_of(study).data_settings(study)
    assert set(settings) == {"task", "p", "train_size", "regression_dim", "data_seeds"}
    out = tmp_path / "dataset.pt"
    main(["prepare", "--study", json.dumps(settings), "--out", str(out)])
    written = io.load_torch(out)
    expected = toy_dataset(settings)
    assert set(written) == set(expected)
    for seed, split in expected.items():
        assert torch.equal(written[seed]["x_train"], split.x_train)
        assert torch.equal(written[seed]["targets"], split.targets)
    mnist = load_config()["studies"]["mnist"]
    assert task_of(mnist).prepare is None  # MNIST subsets are shared between studies: their own rule
