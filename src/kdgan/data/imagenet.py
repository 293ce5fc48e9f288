"""ImageNet subsets at 64 px for the KD-DLGAN ImageNet rows (10%, 5%, 2.5% of the training set).

Reads the standard ILSVRC-2012 layout, `ROOT/train/<wnid>/*.JPEG` (and `ROOT/val/<wnid>/*.JPEG`
or a flat `ROOT/val/*.JPEG`), draws a class-balanced subset from the file lists (only the kept
files are decoded), and prepares each image as BigGAN's ImageNet pipeline crops it (the largest
centre square, BigGAN-PyTorch's CenterCropLongEdge) and as the downsampled ImageNet of
Chrabaszcz et al. (2017) shrinks it (the box filter, i.e. area averaging), to 64 x 64. The
output is a `kdgan data prepare` zip (PNGs + dataset.json) that every command reads.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kdgan.data.imageset import ImageSet
from kdgan.data.prepare import write_prepared
from kdgan.data.sources import DATASET_FORMAT
from kdgan.data.subset import select_subset
from kdgan.errors import KdganError

log = logging.getLogger(__name__)

SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")  # "<wnid> <names>" per line
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def prepare_64(img: Image.Image, resolution: int = 64) -> np.ndarray:
    """RGB, the largest centre square, box-filter (area) downsample to `resolution`: uint8 (R, R, 3)."""
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    return np.asarray(img.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.uint8)


def list_split(root: Path, split: str) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """Image files of ROOT/<split>, their labels (index of the sorted wnid folders) and the wnids;
    labels None for a flat folder (the raw validation set)."""
    folder = root / split
    if not folder.is_dir():
        raise KdganError(f"{folder} does not exist; point at the ImageNet root that holds train/<wnid>/ "
                         "(and val/), e.g. ILSVRC/Data/CLS-LOC")
    wnids = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if wnids:
        files, labels = [], []
        for k, wnid in enumerate(wnids):
            names = sorted(f for f in (folder / wnid).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            files += names
            labels += [k] * len(names)
        return files, np.array(labels, dtype=np.int64), wnids
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise KdganError(f"{folder} holds neither <wnid>/ class folders nor images")
    return files, None, []


def class_names(root: Path, wnids: list[str], synsets: str | None = None) -> list[str]:
    """Readable names (first synonym) of the wnids from a synset list beside the data
    (LOC_synset_mapping.txt, synset_words.txt or words.txt) or `synsets`; else the wnids."""
    candidates = [Path(synsets)] if synsets else [d / n for d in (root, root.parent) for n in SYNSET_FILES]
    for path in candidates:
        if path.is_file():
            mapping = {}
            for line in path.read_text().splitlines():
                parts = line.strip().split(maxsplit=1)
                if len(parts) == 2:
                    mapping[parts[0]] = parts[1].split(",")[0].strip()
            missing = [w for w in wnids if w not in mapping]
            if missing:
                raise KdganError(f"{path} has no names for {len(missing)} classes (e.g. {missing[0]})")
            return [mapping[w] for w in wnids]
    if synsets:
        raise KdganError(f"synset list {synsets} does not exist")
    if wnids:
        log.warning("no synset list (%s) found beside %s: class names are wnids, so CGKD prompts "
                    "read 'a n01440764'; pass --synsets FILE for readable names",
                    ", ".join(SYNSET_FILES), root)
    return list(wnids)


def prepare_imagenet(root: str | os.PathLike, out: str | os.PathLike, fraction: float = 0.1,
                     resolution: int = 64, split: str = "train", seed: int = 0,
                     synsets: str | None = None) -> ImageSet:
    """Write a class-balanced `fraction` of ImageNet's `split` at `resolution` px to the zip `out`.

    Per class round(fraction * n_c) images are drawn without replacement with seed `seed`
    (kdgan.data.select_subset), so 10% keeps about 128 images of each of the 1,000 classes.
    """
    root, out = Path(root).expanduser(), Path(out)
    if out.suffix.lower() != ".zip":
        raise KdganError(f"--out {out} must end in .zip")
    files, labels, wnids = list_split(root, split)
    indices = select_subset(len(files), fraction, seed, labels, balanced=labels is not None)
    names = class_names(root, wnids, synsets)

    def load(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as img:
                return prepare_64(img, resolution)
        except (OSError, SyntaxError) as e:
            raise KdganError(f"{path}: unreadable image ({e}); replace the file") from None

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        images = np.stack(list(pool.map(load, [files[i] for i in indices], chunksize=64)))
    kept = None if labels is None else labels[indices]
    ds = ImageSet(images, kept, names if kept is not None else [])
    meta: dict[str, Any] = {
        "format": DATASET_FORMAT, "num_images": len(ds), "resolution": resolution,
        "source": str(root), "split": split, "class_names": ds.class_names,
        "preparation": "largest centre square, box-filter downsample (PIL BOX)",
        "subset": {"fraction": fraction, "seed": seed, "balanced": labels is not None,
                   "of_num_images": len(files), "indices": indices.tolist()},
        "skipped": [], "content_sha256": ds.content_hash(),
        "files": [f"{i:07d}.png" for i in range(len(ds))],
        "labels": None if kept is None else kept.tolist(),
    }
    write_prepared(ds, out, meta)
    return ds
