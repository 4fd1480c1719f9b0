"""Validate the workflow config against its JSON schema and fill in documented defaults.

A wrong key or value stops the workflow with one line that names the key, e.g.
``config error at studies.toy_cls.budget: -5 is less than the minimum of 1``.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from grokking.figures import KINDS as FIGURE_KINDS
from grokking.grid import CHOICE_AXES, axis_values, grid_axes, study_cells
from grokking.tasks import task_of

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
    if error.validator == "type" and _is_number_text(error.instance):
        return (f"{error.message} (YAML reads {error.instance} as text: write a number with a dot and a "
                f"signed exponent, e.g. 1.0e+5, or in full)")
    return error.message


def _is_number_text(value: Any) -> bool:
    """Text that names a number: YAML 1.1 reads ``1e5`` (no dot, no sign) as a string."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _error_line(error: jsonschema.ValidationError) -> str:
    return f"config error at {_key_path(error)}: {_describe(error)}"


def _as_declared(subschema: dict, value: Any) -> Any:
    """A whole float (YAML reads ``1.0e+5`` as one) at an integer key, as the int it names.

    jsonschema's draft 7 counts 300.0 as an integer, so it passes validation and would reach
    ``range(budget)`` as a float; fractions such as 300.5 were already refused by the schema.
    """
    if subschema.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _filling(validator_class):
    """Extend a jsonschema validator so that validating also fills `default` values in place and
    turns whole floats at integer keys (object properties and array items) into ints."""
    validate_properties = validator_class.VALIDATORS["properties"]
    validate_items = validator_class.VALIDATORS["items"]

    def fill_properties(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
                if name in instance:
                    instance[name] = _as_declared(subschema, instance[name])
        yield from validate_properties(validator, properties, instance, schema)

    def fill_items(validator, items, instance, schema):
        if isinstance(instance, list) and isinstance(items, dict):
            instance[:] = [_as_declared(items, value) for value in instance]
        yield from validate_items(validator, items, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_properties, "items": fill_items})


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in and sweeps expanded; raise
    ConfigError otherwise."""
    config = expand_sweeps(config)
    schema = load_schema()
    validator = jsonschema.Draft7Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config), key=_depth_first)
    if error is not None:
        raise ConfigError(_error_line(error))
    filled = copy.deepcopy(config)
    _filling(jsonschema.Draft7Validator)(schema).validate(filled)
    _check_semantics(filled)
    return filled


# Short names of swept keys in member study names (others keep their own name).
SWEEP_NAMES = {"batch_size": "b", "train_fraction": "f"}


def sweep_member(family: str, point: dict[str, Any]) -> str:
    """The name of one member study of a sweep, e.g. ``bxn_p47_b8``."""
    return "_".join([family, *(f"{SWEEP_NAMES.get(key, key)}{value:g}" for key, value in point.items())])


def expand_sweeps(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` where every study with ``sweep: {key: [values], ...}`` is replaced by one
    member study per combination of the values (first key outermost), and a figure naming the family
    draws its members in that order.

    A sweep is for settings that cannot vary inside one shard (the modulus, the batch size): each
    member is an ordinary study with its own data, shards and tables, so everything downstream works
    unchanged and a member can be rebuilt alone.
    """
    studies = config.get("studies")
    if not isinstance(studies, dict) or not any(isinstance(s, dict) and "sweep" in s for s in studies.values()):
        return config
    expanded, families = {}, {}
    for name, study in studies.items():
        if not isinstance(study, dict) or "sweep" not in study:
            expanded[name] = study
            continue
        sweep = study["sweep"]
        if not isinstance(sweep, dict) or not sweep:
            raise ConfigError(f"config error at studies.{name}.sweep: a mapping of study keys to lists of values")
        for key, values in sweep.items():
            if key in ("task", "grid", "sweep") or not isinstance(values, list) or not values or any(
                    isinstance(v, (dict, list, bool)) or not isinstance(v, (int, float)) for v in values):
                raise ConfigError(f"config error at studies.{name}.sweep.{key}: a non-empty list of numbers "
                                  f"for a study key other than task and grid")
        base = {key: value for key, value in study.items() if key != "sweep"}
        members = []
        for values in itertools.product(*sweep.values()):
            point = dict(zip(sweep, values))
            member = sweep_member(name, point)
            if member in studies:
                raise ConfigError(f"config error at studies.{name}.sweep: member {member} is also a study")
            expanded[member] = {**copy.deepcopy(base), **point}
            members.append(member)
        families[name] = members
    out = {**config, "studies": expanded}
    figures = config.get("figures")
    if isinstance(figures, dict):
        out["figures"] = {
            figure: {**spec, "studies": [m for s in spec["studies"] for m in families.get(s, [s])]}
            if isinstance(spec, dict) and isinstance(spec.get("studies"), list) else spec
            for figure, spec in figures.items()
        }
    return out


def _depth_first(error: jsonschema.ValidationError):
    # Prefer the deepest error: it names the most specific key.
    return (-len(error.absolute_path), jsonschema.exceptions.relevance(error))


def _check_semantics(config: dict[str, Any]) -> None:
    """Rules the schema cannot express."""
    for name, study in config["studies"].items():
        _check_grid(name, study["grid"])
        if study.get("extended_budget", study["budget"] + 1) <= study["budget"]:
            raise ConfigError(
                f"config error at studies.{name}.extended_budget: {study['extended_budget']} is not "
                f"above the budget {study['budget']}"
            )
        try:
            task_of(study).check(study)
        except ValueError as error:
            raise ConfigError(f"config error at studies.{name}.{error}") from None
    for figure, spec in config["figures"].items():
        _check_figure_studies(figure, spec, config["studies"])
        _check_figure_keys(figure, spec)
        if spec["kind"] == "response" and "axis" not in spec:
            raise ConfigError(f"config error at figures.{figure}.axis: a response figure needs the cell column "
                              f"it plots against (wd_after or label_noise)")
        if "changes" in spec:
            _check_changes(figure, spec, config["studies"])
        if spec["kind"] == "smooth" and "extended_budget" not in config["studies"][spec["studies"][0]]:
            raise ConfigError(
                f"config error at figures.{figure}: study {spec['studies'][0]} has no extended_budget"
            )


# What every value of an axis must satisfy: AdamW with lr <= 0 does not train (or climbs the loss),
# and a negative weight decay pushes weights away from zero.
AXIS_RULES = {
    "lr": ("learning rate", "> 0", lambda value: value > 0),
    "wd": ("weight decay", ">= 0", lambda value: value >= 0),
    "noise": ("noise level", ">= 0", lambda value: value >= 0),
    "init_scale": ("initialization scale", "> 0", lambda value: value > 0),
    "wd_after": ("weight decay", ">= 0", lambda value: value >= 0),
    "label_noise": ("label-flip probability", "in [0, 1]", lambda value: 0 <= value <= 1),
    "augment": ("augmentation strength", ">= 0", lambda value: value >= 0),
}


def _check_grid(name: str, grid: dict[str, Any]) -> None:
    """Axis ranges the schema cannot express: bounds in order, lr > 0 and wd >= 0 at every value,
    pairwise axes equally long, a sample no larger than the grid."""
    axes = grid_axes(grid)
    if grid.get("pairwise"):
        lengths = {axis: len(axis_values(grid[axis])) for axis in axes}
        if len(set(lengths.values())) > 1:
            counts = ", ".join(f"{axis} has {n}" for axis, n in lengths.items())
            raise ConfigError(f"config error at studies.{name}.grid.pairwise: {counts} values; pairwise "
                              f"axes need as many of each")
    if "sample" in grid:
        size = len(axis_values(grid[axes[0]])) if grid.get("pairwise") else math.prod(
            len(axis_values(grid[axis])) for axis in axes)
        if grid["sample"]["n"] > size:
            raise ConfigError(f"config error at studies.{name}.grid.sample.n: {grid['sample']['n']} "
                              f"points asked of a grid of {size}")
    for axis_name in axes:
        if axis_name in CHOICE_AXES:  # names, checked by the schema
            continue
        what, rule, valid = AXIS_RULES[axis_name]
        axis, where = grid[axis_name], f"studies.{name}.grid.{axis_name}"
        if "values" in axis:
            named = [(f"{where}.values[{i}]", value) for i, value in enumerate(axis["values"])]
        elif axis["scale"] == "log" and (axis["min"] <= 0 or axis["max"] <= 0):
            raise ConfigError(f"config error at {where}: a log axis needs min and max > 0")
        elif axis["min"] > axis["max"]:
            raise ConfigError(f"config error at {where}: min is larger than max")
        else:
            named = [(f"{where}.min", axis["min"])]
        for key, value in named:
            if not valid(value):
                raise ConfigError(f"config error at {key}: {value} is not a valid {what} (must be {rule})")


def _check_changes(figure: str, spec: dict[str, Any], studies: dict[str, Any]) -> None:
    """A change table names every cell of its studies once, in their order (003 Table 3's rows)."""
    cells = sum(len(study_cells(studies[study])) for study in spec["studies"])
    if len(spec["changes"]) != cells:
        raise ConfigError(f"config error at figures.{figure}.changes: {len(spec['changes'])} changes for the "
                          f"{cells} cells of its studies; give one per cell, in the order of the studies and "
                          f"of each study's grid")


def _check_figure_studies(figure: str, spec: dict[str, Any], studies: dict[str, Any]) -> None:
    """A figure naming a study that does not exist (a typo) stops the run instead of vanishing
    from `all`."""
    for study in spec["studies"]:
        if study not in studies:
            raise ConfigError(f"config error at figures.{figure}.studies: unknown study {study!r} "
                              f"(studies: {', '.join(studies)})")


# Figure keys that only some kinds of figure take, and the kinds that draw a fixed number of studies.
def _check_figure_keys(figure: str, spec: dict[str, Any]) -> None:
    """The kind is registered, takes the keys given, gets as many studies as it draws, and as many
    labels as studies."""
    if spec["kind"] not in FIGURE_KINDS:
        raise ConfigError(f"config error at figures.{figure}.kind: unknown kind {spec['kind']!r} "
                          f"(kinds: {', '.join(FIGURE_KINDS)})")
    owners: dict[str, list[str]] = {}
    for kind in FIGURE_KINDS.values():
        for key in kind.keys:
            owners.setdefault(key, []).append(kind.name)
    for key, kinds in owners.items():
        if key in spec and spec["kind"] not in kinds:
            raise ConfigError(f"config error at figures.{figure}.{key}: only {' and '.join(kinds)} "
                              f"figures take one")
    if "labels" in spec and len(spec["labels"]) != len(spec["studies"]):
        raise ConfigError(f"config error at figures.{figure}.labels: {len(spec['labels'])} labels for "
                          f"{len(spec['studies'])} studies; give one per study, in the order of studies")
    wanted = FIGURE_KINDS[spec["kind"]].n_studies
    if wanted is not None and len(spec["studies"]) != wanted:
        count = "one study" if wanted == 1 else f"{wanted} studies"
        raise ConfigError(f"config error at figures.{figure}.studies: a {spec['kind']} figure draws {count}")
