"""Fingerprints of a results folder catch any changed, missing or new table."""

import pytest

from grokking.cli import main


def test_fingerprints_catch_a_changed_a_missing_and_a_new_table(tmp_path):
    results = tmp_path / "results"
    for study in ("toy_cls", "mnist"):
        (results / study).mkdir(parents=True)
        (results / study / "cells.csv").write_text(f"cell_id,t_train\n{study},10\n")
    (results / "toy_cls" / "phases.csv").write_text("cell_id,phase\ntoy_cls,grokking\n")
    record = tmp_path / "before.json"
    main(["fingerprint", str(results), "--out", str(record)])
    main(["fingerprint", str(results), "--check", str(record)])  # unchanged: passes

    (results / "toy_cls" / "cells.csv").write_text("cell_id,t_train\ntoy_cls,11\n")
    (results / "mnist" / "cells.csv").unlink()
    (results / "mnist" / "phases.csv").write_text("x\n")
    with pytest.raises(SystemExit, match="3 of the tables differ"):
        main(["fingerprint", str(results), "--check", str(record)])
