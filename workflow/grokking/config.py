"""Validate the workflow config against its JSON schema and fill in documented defaults.

A wrong key or value stops the workflow with one line that names the key, e.g.
``config error at studies.toy_cls.budget: -5 is less than the minimum of 1``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from grokking.grid import axis_values

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value is wrong; the message names the offending key."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        # Name the unknown key itself, which is what a user with a typo needs to see.
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {', '.join(map(repr, extra))}{hint}"
    if error.validator == "oneOf" and "axis" in str(error.schema.get("description", "")):
        return "an axis needs either `values` or all of `scale`, `min`, `max`, `num`, not both"
    return error.message


def _error_line(error: jsonschema.ValidationError) -> str:
    return f"config error at {_key_path(error)}: {_describe(error)}"


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that validating also fills `default` values in place."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in; raise ConfigError otherwise."""
    schema = load_schema()
    validator = jsonschema.Draft7Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config), key=_depth_first)
    if error is not None:
        raise ConfigError(_error_line(error))
    filled = copy.deepcopy(config)
    _with_defaults(jsonschema.Draft7Validator)(schema).validate(filled)
    _check_semantics(filled)
    return filled


def _depth_first(error: jsonschema.ValidationError):
    # Prefer the deepest error: it names the most specific key.
    return (-len(error.absolute_path), jsonschema.exceptions.relevance(error))


def _check_semantics(config: dict[str, Any]) -> None:
    """Rules the schema cannot express."""
    for name, study in config["studies"].items():
        if study["grid"].get("pairwise"):
            lengths = [len(axis_values(study["grid"][axis])) for axis in ("lr", "wd")]
            if lengths[0] != lengths[1]:
                raise ConfigError(f"config error at studies.{name}.grid.pairwise: lr has {lengths[0]} "
                                  f"values and wd {lengths[1]}; pairwise axes need as many of each")
        for axis_name, axis in study["grid"].items():
            where = f"studies.{name}.grid.{axis_name}"
            if not isinstance(axis, dict) or "values" in axis:
                continue
            if axis["scale"] == "log" and (axis["min"] <= 0 or axis["max"] <= 0):
                raise ConfigError(f"config error at {where}: a log axis needs min and max > 0")
            if axis["min"] > axis["max"]:
                raise ConfigError(f"config error at {where}: min is larger than max")
        if study.get("extended_budget", study["budget"] + 1) <= study["budget"]:
            raise ConfigError(
                f"config error at studies.{name}.extended_budget: {study['extended_budget']} is not "
                f"above the budget {study['budget']}"
            )
        if study["task"] == "mnist":
            _check_mnist(name, study)
            continue
        n_pairs = study["p"] * (study["p"] + 1) // 2
        if study["train_size"] >= n_pairs:
            raise ConfigError(
                f"config error at studies.{name}.train_size: {study['train_size']} leaves no "
                f"validation pairs out of {n_pairs}"
            )
    for figure, spec in config["figures"].items():
        _check_figure_keys(figure, spec)
        if spec["kind"] == "dynamics":
            if len(spec["studies"]) != 2:
                raise ConfigError(f"config error at figures.{figure}.studies: a dynamics figure draws "
                                  f"two studies (curves, then the T_train map)")
            continue
        if spec["kind"] != "smooth":
            continue
        study = config["studies"].get(spec["studies"][0])
        if study is not None and "extended_budget" not in study:
            raise ConfigError(
                f"config error at figures.{figure}: study {spec['studies'][0]} has no extended_budget"
            )


# Figure keys that only one kind of figure takes, and the kinds that draw exactly one study.
KIND_OF_KEY = {"outline": "smooth", "rows": "facets", "cols": "facets", "max_step": "trajectories"}
ONE_STUDY_KINDS = ("smooth", "facets", "trajectories")


def _check_figure_keys(figure: str, spec: dict[str, Any]) -> None:
    for key, kind in KIND_OF_KEY.items():
        if key in spec and spec["kind"] != kind:
            raise ConfigError(f"config error at figures.{figure}.{key}: only {kind} figures take one")
    if spec["kind"] in ONE_STUDY_KINDS and len(spec["studies"]) != 1:
        raise ConfigError(f"config error at figures.{figure}.studies: a {spec['kind']} figure draws one study")


def _check_mnist(name: str, study: dict[str, Any]) -> None:
    """MNIST rules: the batch fits the subset, budgets lie on the evaluation schedule."""
    from grokking.mnist_engine import is_eval_step

    if study["batch_size"] > study["subset_size"]:
        raise ConfigError(f"config error at studies.{name}.batch_size: {study['batch_size']} is larger "
                          f"than subset_size {study['subset_size']}")
    schedule = study["eval"]
    if schedule["until"] % schedule["every"]:
        raise ConfigError(f"config error at studies.{name}.eval.until: {schedule['until']} is not a "
                          f"multiple of every ({schedule['every']})")
    for key in ("budget", "extended_budget"):
        if key in study and not is_eval_step(study[key], schedule):
            raise ConfigError(
                f"config error at studies.{name}.{key}: {study[key]} is not an evaluation step (every "
                f"{schedule['every']} up to {schedule['until']}, then every {schedule['every_after']}), "
                f"so its accuracies would never be measured"
            )
