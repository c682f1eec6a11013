"""Small JSON records that stages leave for the next stage and for people."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def write_json(path: Path, record) -> Path:
    """Write a dataclass or mapping as indented JSON; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(record), indent=2, sort_keys=False) + "\n")
    return path


def read_json(path: Path, stage: str) -> dict:
    """Read a stage's record, telling which stage to run when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the {stage} stage first")
    return json.loads(path.read_text())
