"""CIFAR-10 / CIFAR-100 from the official python archives (Krizhevsky 2009).

`cifar10` / `cifar100` by name read `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`
from $KDGAN_DATA_DIR (default ~/.cache/kdgan/data), downloading it once when online.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from kdgan.data.imageset import ImageSet
from kdgan.data.sources import to_rgb_square
from kdgan.errors import KdganError

log = logging.getLogger(__name__)

CIFAR_NAMES = ("cifar10", "cifar100")
_ARCHIVES = {
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}
_URL = "https://www.cs.toronto.edu/~kriz/"


def data_dir() -> Path:
    return Path(os.environ.get("KDGAN_DATA_DIR", Path.home() / ".cache" / "kdgan" / "data"))


def is_cifar_archive(name: str) -> bool:
    return Path(name).name in {a for a, _ in _ARCHIVES.values()}


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_archive(name: str) -> Path:
    """Path of the official archive for `name`, downloaded (and checksummed) if absent."""
    filename, md5 = _ARCHIVES[name]
    path = data_dir() / filename
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", _URL + filename, path)
    tmp = path.with_suffix(".part")
    try:
        urllib.request.urlretrieve(_URL + filename, tmp)
    except OSError as e:
        raise KdganError(
            f"cannot download {filename} ({e}); download it by hand from {_URL} and put it at "
            f"{path} (or set KDGAN_DATA_DIR), or pass the archive's path as --data"
        ) from None
    if _md5(tmp) != md5:
        tmp.unlink()
        raise KdganError(f"{filename} downloaded with a wrong checksum; try again")
    tmp.replace(path)
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """The archives are pickled dicts of numpy arrays and lists: allow exactly that, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR archive")
        return super().find_class(module, name)


def load(name: str, split: str, resolution: int | None) -> ImageSet:
    """Read one split of an official CIFAR archive (by name or path)."""
    if split not in ("train", "test"):
        raise KdganError(f"CIFAR has splits train and test, not {split!r}; use --split train|test")
    path = fetch_archive(name) if name in CIFAR_NAMES else Path(name)
    hundred = "100" in path.name
    if split == "train":
        members = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    else:
        members = ["test"] if hundred else ["test_batch"]
    meta_member = "meta" if hundred else "batches.meta"
    label_key = b"fine_labels" if hundred else b"labels"
    try:
        with tarfile.open(path, "r:gz") as tar:
            by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(member: str) -> dict:
                return _ArrayUnpickler(tar.extractfile(by_name[member]), encoding="bytes").load()

            batches = [read(m) for m in members]
            names_key = b"fine_label_names" if hundred else b"label_names"
            class_names = [c.decode() for c in read(meta_member)[names_key]]
        images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        images = images.transpose(0, 2, 3, 1).astype(np.uint8, copy=True)
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
    except (tarfile.TarError, pickle.UnpicklingError, KeyError, OSError, EOFError, zlib.error, ValueError,
            TypeError, AttributeError) as e:
        raise KdganError(
            f"{path} is not a readable CIFAR python archive ({type(e).__name__}: {e}); download it again"
        ) from None
    if resolution is not None and resolution != 32:
        images = np.stack([np.asarray(to_rgb_square(Image.fromarray(x), resolution)) for x in images])
    # "order": the archives hold the images in the original order, over which the released code
    # draws its subsets (kdgan.data.subset)
    meta = {"source": str(path), "split": split, "order": "cifar-original"}
    return ImageSet(images, labels, class_names, meta)
