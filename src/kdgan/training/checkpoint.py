"""Checkpoints that never lose a run: atomic writes, last-K rotation, best copy, safe loading.

A checkpoint is data, not code: a dict of tensors, numbers, strings, lists and dicts, loaded
with `torch.load(weights_only=True)`; nothing is unpickled beyond that allow-list.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from kdgan.errors import KdganError

log = logging.getLogger(__name__)

FORMAT = "kdgan-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file, fsync, rename: `path` is always either old or complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except RuntimeError as e:  # torch's zip writer wraps a refused write (a full disk) in its own error
        if isinstance(e.__context__, OSError):
            raise e.__context__ from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a kdgan checkpoint onto the CPU with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise KdganError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or foreign files
        raise KdganError(f"{path} is not a readable kdgan checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise KdganError(f"{path} is not a kdgan checkpoint (no {FORMAT!r} format tag)")
    return ckpt


class CheckpointManager:
    """Writes `ckpt-<step>.pt` into a folder, keeps the newest `keep`, and `best.pt` by a metric."""

    def __init__(self, folder: str | os.PathLike, keep: int):
        self.folder = Path(folder)
        self.keep = keep

    def steps(self) -> list[int]:
        """Steps of the checkpoints on disk, ascending."""
        if not self.folder.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step: int) -> Path:
        return self.folder / f"ckpt-{step:09d}.pt"

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write the checkpoint of `step`, then delete all but the newest `keep`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(step)
        save_atomic(state, path)
        for old in self.steps()[:-self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any], metric: str, value: float) -> bool:
        """Write best.pt when `value` (lower is better) beats the recorded best; True if it did."""
        record = self.folder / "best.json"
        if record.exists():
            best = json.loads(record.read_text())
            if best.get("metric") == metric and best["value"] <= value:
                return False
        self.folder.mkdir(parents=True, exist_ok=True)
        save_atomic(state, self.folder / "best.pt")
        tmp = record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"metric": metric, "value": value, "step": state["step"]}))
        os.replace(tmp, record)
        return True

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint, or None; a damaged newest file falls back to older ones."""
        for step in reversed(self.steps()):
            try:
                return load_checkpoint(self.path(step))
            except KdganError as e:
                log.warning("%s; trying the previous checkpoint", e)
        return None
