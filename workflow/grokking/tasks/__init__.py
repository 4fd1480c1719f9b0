"""Tasks: one module each, registered here by name (a study's ``task:``).

A task says where a study's data file lives and how it is made, which config rules its settings must meet beyond the
schema (its schema block is ``<task>_study`` in workflow/schemas/config.schema.yaml), how a shard of
its cells trains, and what a panel title calls it. The workflow, the config check and the training
verb ask the registry instead of testing the task's name.

Nothing here imports torch at import time: config validation reads the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import pandas as pd

    from grokking.trainer import EngineSettings, ShardResult


@dataclass(frozen=True)
class Task:
    """One task.

    - ``dataset(study_name, study)``: the data file the study's shards train on;
    - ``data_keys`` and ``prepare(data_settings, out)``: a task whose data belongs to one study
      (``results/<study>/dataset.pt``) names the settings that define it and writes it from them;
      the generic rule ``prepare_study_data`` calls ``prepare`` and reruns only when those settings
      change. A task with data shared between studies (MNIST) leaves both empty and brings its rule;
    - ``check(study)``: rules the schema cannot express; raises ValueError("<key>: <what is wrong>");
    - ``train(study, cells, data_path, settings, resume)``: trains one shard (or continues it from
      ``resume``, its saved end state) and returns its metrics, history and end state;
    - ``label(study)``: what a panel title says the study trains;
    - ``clock``: what its budget and threshold steps count (optimizer "steps", or "epochs").
    """

    name: str
    dataset: Callable[[str, dict[str, Any]], str]
    check: Callable[[dict[str, Any]], None]
    train: Callable[["dict[str, Any]", "pd.DataFrame", str, "EngineSettings", "dict | None"], "ShardResult"]
    label: Callable[[dict[str, Any]], str]
    data_keys: tuple[str, ...] = ()
    prepare: Callable[[dict[str, Any], str], None] | None = None
    clock: str = "steps"

    def data_settings(self, study: dict[str, Any]) -> dict[str, Any]:
        """The settings that define a study's data file (changing any other never rebuilds it)."""
        return {key: study[key] for key in ("task", *self.data_keys)}


def _registry() -> dict[str, Task]:
    from grokking.tasks import mnist, modular, parity, toy

    return {task.name: task for task in (toy.TASK, mnist.TASK, modular.TASK, parity.TASK)}


TASKS = _registry()


def task_of(study: dict[str, Any]) -> Task:
    """The registered task of a study's settings."""
    return TASKS[study["task"]]
