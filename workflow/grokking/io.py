"""Atomic file writes: a killed job never leaves a half-written file that looks finished. And the
reading side: a file damaged anyway (a full disk, an interrupted copy, an edit) stops the job with
one line that names it and says how to get a good one back.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)

@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        import torch  # here, not at the top: the table-only verbs start 2-3 s faster without it

        torch.save(obj, tmp)


class DamagedFileError(ValueError):
    """A pipeline file exists but cannot be trusted; the message names it and the way back."""


# What deleting a damaged file re-runs, by the folder it lies in (results/<study>/<folder>/<shard>.*).
REMADE_BY_FOLDER = {
    "shards": "shard {shard} trains again",
    "extended": "the continuation of shard {shard} runs again",
}


def damaged(path: str | os.PathLike, problem: str) -> DamagedFileError:
    """The error for a damaged file: deleting it makes Snakemake re-run the job that wrote it."""
    path = Path(path)
    remade = REMADE_BY_FOLDER.get(path.parent.name, "the job that wrote it runs again")
    return DamagedFileError(f"{path} is damaged: {problem}; delete it and run snakemake again, so that "
                            f"{remade.format(shard=path.name.split('.')[0])}")


def load_torch(path: str | os.PathLike) -> Any:
    """torch.load on the CPU; a truncated or overwritten file raises DamagedFileError naming it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, OSError, UnpicklingError, ...
        reason = str(error).split(". ")[0]  # torch's zip errors go on for lines
        raise damaged(path, f"{type(error).__name__}: {reason}") from error


def load_histories(paths: list[str]) -> dict:
    """Cell id -> history, over the history files of a study's shards."""
    histories: dict = {}
    for path in paths:
        histories.update(load_torch(path))
    return histories
