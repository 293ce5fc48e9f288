"""Shared fixtures: small real image folders written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_image_folder(root: Path, classes: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """root/<class>/<i>.png with random-but-structured RGB images."""
    rng = np.random.default_rng(seed)
    for c, n in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / c / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", {"cat": 12, "dog": 8})


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10-jpeg-10pct.zip").exists():
        pytest.skip("../shared/data is not beside this checkout (only on the team's machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _kdgan_logger_reaches_caplog():
    """The CLI points the `kdgan` logger at its own handler and stops propagation; tests that
    invoke the CLI must not leave it so, or later tests' caplog sees nothing."""
    import logging

    yield
    logger = logging.getLogger("kdgan")
    logger.handlers[:] = []
    logger.propagate = True
