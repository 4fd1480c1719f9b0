"""Continuing from a saved end state gives the trajectory of one uninterrupted run."""

import pandas as pd
import torch

from grokking.trainer import EngineSettings
from grokking.tasks.toy_trainer import train_toy_shard
from tests.conftest import study_with
from tests.test_engine import make_cells

SETTINGS = EngineSettings(device="cpu", compile=False, check_every=10)
# Cells that do not converge within N = 250 steps (so they have an end state), one that grokks
# between N and 2N, and ones that never converge.
PAIRS = [(1e-4, 0.0), (3.162e-4, 0.0), (1e-3, 5.0), (1e-2, 10.0), (1e-5, 1.0)]


def test_continuing_n_to_2n_equals_one_run_of_2n(config):
    n = 250
    study = study_with(config, "toy_cls", budget=n)
    cells = make_cells(PAIRS)
    first = train_toy_shard(study, cells, SETTINGS)
    state = first.end_state
    running = cells[cells["cell_id"].isin(state["cell_ids"])]
    assert 3 <= len(running) < len(cells) or len(running) == len(cells)
    continued = train_toy_shard({**study, "budget": 2 * n}, running, SETTINGS, resume=state)
    whole = train_toy_shard({**study, "budget": 2 * n}, running, SETTINGS)
    pd.testing.assert_frame_equal(continued.metrics, whole.metrics)  # T values, accuracies: bitwise
    if whole.end_state is not None:
        assert continued.end_state["cell_ids"] == whole.end_state["cell_ids"]
        for key in ("params", "exp_avg", "exp_avg_sq"):
            for name, value in whole.end_state[key].items():
                assert torch.equal(continued.end_state[key][name], value), (key, name)
    # The continuation's history picks up where the first run's ended, without a repeated step.
    for cid in running["cell_id"]:
        before, after = first.history[cid]["step"], continued.history[cid]["step"]
        assert before[-1] == n and after[0] == n + 10
        joined = torch.cat([before, after])
        assert torch.equal(joined, whole.history[cid]["step"])
        assert torch.equal(
            torch.cat([first.history[cid]["val_acc"], continued.history[cid]["val_acc"]]),
            whole.history[cid]["val_acc"],
        )


def test_resume_refuses_cells_without_saved_state(config):
    study = study_with(config, "toy_cls", budget=50)
    cells = make_cells(PAIRS[:2])
    state = train_toy_shard(study, cells, SETTINGS).end_state
    other = make_cells([(5e-3, 3.0)])
    try:
        train_toy_shard({**study, "budget": 100}, other, SETTINGS, resume=state)
    except ValueError as error:
        assert "no saved state" in str(error)
    else:
        raise AssertionError("expected a ValueError")
