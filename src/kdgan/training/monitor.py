"""What a run shows: log records (JSONL + TensorBoard), a progress bar, and image grids."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

log = logging.getLogger(__name__)


def save_image_grid(images: torch.Tensor | np.ndarray, path: str | Path, cols: int) -> None:
    """Tile uint8 images (N, H, W, 3) into rows of `cols` and save as PNG."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = img
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


class TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


class RunMonitor:
    """Writes `log.jsonl` and TensorBoard events in the run folder and drives the progress bar.

    Only the main process writes; other ranks get a monitor that does nothing.
    """

    def __init__(self, run_dir: Path, enabled: bool, start_step: int, total_steps: int,
                 images_per_step: int):
        self.enabled = enabled
        self.images_per_step = images_per_step
        self._t_last, self._step_last = time.perf_counter(), start_step
        self.bar = None
        self._postfix: dict[str, str] = {}
        self.tb = None
        self.jsonl = None
        if not enabled:
            return
        self.jsonl = open(run_dir / "log.jsonl", "a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is a dependency; a broken install should not stop training
            log.warning("tensorboard is not importable; logging to log.jsonl only")
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        mininterval=0.5 if tty else 60.0, file=sys.stderr, smoothing=0.1)

    def update(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def record(self, step: int, scalars: dict[str, float], throughput: bool = True) -> dict[str, float]:
        """Log scalars at `step` (adding images/s since the last throughput record)."""
        if throughput:
            now = time.perf_counter()
            dt = max(now - self._t_last, 1e-9)
            images_per_s = (step - self._step_last) * self.images_per_step / dt
            self._t_last, self._step_last = now, step
            scalars = {**scalars, "perf/images_per_s": images_per_s}
        if not self.enabled:
            return scalars
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            shown = ("stats/ada_p", "stats/apa_p")  # the adaptive probabilities are worth watching
            short = {k.split("/", 1)[-1] if k.startswith(("perf", "stats")) else k: v
                     for k, v in scalars.items() if not k.startswith("stats/") or k in shown}
            self._postfix.update({k: f"{v:.3g}" for k, v in short.items()})
            self.bar.set_postfix(self._postfix, refresh=False)
        return scalars

    def reset_clock(self) -> None:
        """Exclude time spent outside training steps (evaluation) from images/s."""
        self._t_last = time.perf_counter()

    def add_image(self, tag: str, path: Path, step: int) -> None:
        if self.tb is not None:
            img = np.asarray(Image.open(path))
            self.tb.add_image(tag, img, step, dataformats="HWC")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.jsonl is not None:
            self.jsonl.close()
