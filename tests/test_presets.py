"""The demo and coarse presets draw subsets of the report's grids: a preset cell is a cell of the full
grid, with the same id and, at the same budget, the same result."""

import pytest

from grokking.grid import study_cells
from tests.conftest import load_config

FULL = load_config()


@pytest.mark.parametrize("preset", ["demo", "coarse"])
def test_every_preset_cell_is_a_cell_of_the_reports_grid(preset):
    config = load_config(preset)
    for name, study in config["studies"].items():
        full = study_cells(full_study(name)).set_index("cell_id")
        cells = study_cells(study).set_index("cell_id")
        outside = sorted(set(cells.index) - set(full.index))
        assert not outside, f"{preset}: {name} has cells outside the report's grid: {outside[:3]}"
        # the values themselves are equal, not only their rounded ids
        assert (cells[["lr", "wd"]] == full.loc[cells.index, ["lr", "wd"]]).all().all(), name


def full_study(name):
    """The report's study of a preset's study; a member of a sweep at values the report's sweep lacks
    (a smaller p) is compared with a member of the same sweep, whose grid it shares."""
    if name in FULL["studies"]:
        return FULL["studies"][name]
    family = name.split("_")[0]
    return next(study for full, study in FULL["studies"].items() if full.split("_")[0] == family)


def test_the_check_catches_a_grid_that_is_not_a_subset():
    config = load_config("demo")
    study = dict(config["studies"]["toy_cls"], grid={
        "lr": {"scale": "log", "min": 1e-5, "max": 1e-2, "num": 7},  # 0.5 decades: 9 of 49 cells coincide
        "wd": {"scale": "linear", "min": 0.0, "max": 20.0, "num": 7},
    })
    full = set(study_cells(FULL["studies"]["toy_cls"])["cell_id"])
    assert len(set(study_cells(study)["cell_id"]) & full) == 9
