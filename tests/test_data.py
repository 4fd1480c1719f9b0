"""The toy data and initialisation reproduce the report's public code with the same seeds."""

import numpy as np
import pytest
import torch

from grokking.data import toy_pairs, toy_split
from grokking.models import build_toy_model
from tests.conftest import load_config


def test_pairs_in_reference_order():
    x, y = toy_pairs(10)
    assert len(x) == 55
    assert x[:4].tolist() == [[0, 0], [0, 1], [1, 1], [0, 2]]  # b outer, a inner, a <= b
    assert (y == x.sum(1)).all() and y.max() == 18


def test_split_is_sklearns_train_test_split():
    sklearn = pytest.importorskip("sklearn.model_selection")
    x, y = toy_pairs(10)
    x_train, x_val, y_train, y_val = sklearn.train_test_split(
        x, y, train_size=45 / 55, random_state=42
    )
    split = toy_split(10, 45, 30, 42)
    assert split.x_train.tolist() == x_train.tolist()
    assert split.x_val.tolist() == x_val.tolist()
    assert split.y_train.tolist() == y_train.tolist()


def test_regression_targets_are_the_first_draw_after_seeding():
    torch.manual_seed(42)
    expected = torch.randn(19, 30)
    assert torch.equal(toy_split(10, 45, 30, 42).targets, expected)


def test_global_rng_is_left_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    before = torch.rand(1), np.random.rand()
    torch.manual_seed(0)
    np.random.seed(0)
    toy_split(10, 45, 30, 42)
    build_toy_model(load_config()["studies"]["toy_cls"], "tanh", 102)
    assert (torch.rand(1), np.random.rand()) == before


def test_model_construction_order_and_configured_activation():
    study = load_config()["studies"]["toy_cls"]
    model = build_toy_model(study, "relu", 102)
    torch.manual_seed(102)
    embedding = torch.nn.Embedding(10, 1)
    torch.nn.init.uniform_(embedding.weight, -0.5, 0.5)
    first = torch.nn.Linear(1, 200)
    assert torch.equal(model.embedding.weight, embedding.weight)
    assert torch.equal(model.decoder[0].weight, first.weight)
    # The public code's defect was a silently ignored activation; here it takes effect.
    assert isinstance(model.decoder[1], torch.nn.ReLU)
    assert isinstance(build_toy_model(study, "tanh", 102).decoder[1], torch.nn.Tanh)
    assert model.decoder[4].out_features == 19
