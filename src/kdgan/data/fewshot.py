"""The few-shot benchmarks of DiffAugment / KD-DLGAN, fetched by name when online.

100-shot Obama, Grumpy Cat and Panda (100 images each) and AnimalFace cat (160) and dog (389),
256x256, as published by the DiffAugment authors (Zhao et al., NeurIPS 2020). `--data NAME`
reads `NAME.zip` from $KDGAN_DATA_DIR (default ~/.cache/kdgan/data), downloading it once.
Offline, pass the zip or a folder of the images instead (or put the zip at that path).
"""

from __future__ import annotations

import logging
import urllib.request
import zipfile
from pathlib import Path

from kdgan.errors import KdganError

log = logging.getLogger(__name__)

# canonical name (the published file name) -> number of images in the published set
FEWSHOT: dict[str, int] = {
    "100-shot-obama": 100, "100-shot-grumpy_cat": 100, "100-shot-panda": 100,
    "AnimalFace-cat": 160, "AnimalFace-dog": 389,
}
# short names (the same as the prompt lists and preset names)
ALIASES = {"obama": "100-shot-obama", "grumpy-cat": "100-shot-grumpy_cat", "panda": "100-shot-panda",
           "animalface-cat": "AnimalFace-cat", "animalface-dog": "AnimalFace-dog"}
MIRRORS = ("https://hanlab.mit.edu/projects/data-efficient-gans/datasets/",
           "https://data-efficient-gans.mit.edu/datasets/")


def canonical(name: str) -> str | None:
    """The published name for a few-shot dataset name or alias, else None."""
    return name if name in FEWSHOT else ALIASES.get(name)


def fetch(name: str) -> Path:
    """Path of the few-shot set `name` (alias or published name), downloaded when absent."""
    from kdgan.data.cifar import data_dir

    name = canonical(name) or name
    path = data_dir() / f"{name}.zip"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    errors = []
    for mirror in MIRRORS:
        url = f"{mirror}{name}.zip"
        log.info("downloading %s to %s", url, path)
        try:
            urllib.request.urlretrieve(url, tmp)
            if not zipfile.is_zipfile(tmp):
                raise OSError("the download is not a zip file")
            _check_count(tmp, name)
            tmp.replace(path)
            return path
        except OSError as e:
            errors.append(f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise KdganError(
        f"could not download the few-shot set {name} ({'; '.join(errors)}); when offline, download "
        f"{MIRRORS[0]}{name}.zip elsewhere and pass it (or a folder of its images) with --data, or "
        f"place it at {path}"
    )


def _check_count(path: Path, name: str) -> None:
    """Warn when a downloaded set does not hold the published number of images (no checksums
    are published for these zips, so the count is the check we can make). Counts by the
    loader's own rule (`is_image_name`, which already skips macOS `._` resource forks)."""
    from kdgan.data.sources import is_image_name

    with zipfile.ZipFile(path) as zf:
        count = sum(map(is_image_name, zf.namelist()))
    if count != FEWSHOT[name]:
        log.warning("%s: the download holds %d images, the published set has %d; training goes on "
                    "with what is there (delete the zip to download it again)", name, count, FEWSHOT[name])
