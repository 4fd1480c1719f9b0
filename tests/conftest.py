"""Shared fixtures: validated study settings built from the real config, shrunk where asked."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from grokking.config import validate_config

ROOT = Path(__file__).resolve().parents[1]


def load_config(*presets: str) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for preset in presets:
        _merge(config, yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text()))
    return validate_config(config)


def _merge(base: dict, override: dict) -> None:
    """Snakemake's --configfile semantics: nested dicts merge, everything else replaces."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


@pytest.fixture
def config() -> dict:
    return load_config()


def study_with(config: dict, name: str, **overrides) -> dict:
    study = copy.deepcopy(config["studies"][name])
    study.update(overrides)
    return study
