"""`kdgan data prepare` / `kdgan data info`: freeze a source into a zip of PNGs + dataset.json."""

from __future__ import annotations

import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kdgan.data.imageset import ImageSet
from kdgan.data.sources import DATASET_FORMAT, DATASET_JSON, load_images
from kdgan.data.subset import select_subset
from kdgan.errors import KdganError


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def prepare(
    src: str,
    out: str | os.PathLike,
    resolution: int | None = None,
    split: str = "train",
    fraction: float = 1.0,
    seed: int = 0,
    balanced: bool = False,
    strict: bool = False,
    draw: str = "released",
) -> tuple[ImageSet, list[tuple[str, str]]]:
    """Read `src`, take a subset, and write `out` (a zip of PNGs plus dataset.json).

    Returns the written set and the skipped (file, reason) pairs. The zip is written to a
    temporary name and renamed, so an existing `out` is only replaced by a complete file.
    """
    if not 0 < fraction <= 1:
        raise KdganError(f"--fraction {fraction} is outside (0, 1]; use e.g. 0.1 for 10% of the data")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise KdganError(f"--out {out} must end in .zip")
    full, skipped = load_images(src, split=split, resolution=resolution, strict=strict)
    indices = select_subset(len(full), fraction, seed, full.labels, balanced, draw)
    ds = full.take(indices)
    files = [f"{i:06d}.png" for i in range(len(ds))]
    meta: dict[str, Any] = {
        "format": DATASET_FORMAT,
        "num_images": len(ds),
        "resolution": ds.resolution,
        "source": full.meta.get("source", str(src)),
        "split": full.meta.get("split"),
        "order": full.meta.get("order") if fraction == 1 else None,
        "class_names": ds.class_names,
        "subset": {
            "fraction": fraction, "seed": seed, "balanced": balanced, "draw": draw,
            "of_num_images": len(full), "indices": indices.tolist(),
        },
        "skipped": [f for f, _ in skipped],
        "content_sha256": ds.content_hash(),
        "files": files,
        "labels": None if ds.labels is None else ds.labels.tolist(),
    }
    write_prepared(ds, out, meta)
    return ds, skipped


def write_prepared(ds: ImageSet, out: Path, meta: dict[str, Any]) -> None:
    """Write `ds` as `out` (zip of PNGs named by meta['files'] + dataset.json), atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pngs = pool.map(_png, ds.images, chunksize=64)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(DATASET_JSON, json.dumps(meta))
            for name, data in zip(meta["files"], pngs, strict=True):
                zf.writestr(name, data)
    os.replace(tmp, out)
    ds.meta = {k: v for k, v in meta.items() if k not in ("files", "labels")}


def describe(ds: ImageSet) -> dict[str, Any]:
    """Summary of a data set for `kdgan data info`."""
    info: dict[str, Any] = {
        "num_images": len(ds),
        "resolution": f"{ds.resolution}x{ds.resolution}",
        "classes": ds.num_classes,
        "source": ds.meta.get("source"),
        "split": ds.meta.get("split"),
        "content_sha256": ds.content_hash(),
    }
    if ds.labels is not None:
        counts = np.bincount(ds.labels, minlength=ds.num_classes)
        info["per_class"] = {c: int(n) for c, n in zip(ds.class_names, counts, strict=True)}
    subset = ds.meta.get("subset")
    if subset:
        info["subset"] = (
            f"{subset['fraction']:g} of {subset['of_num_images']} images, seed {subset['seed']}"
            + (f", {subset['draw']} draw" if "draw" in subset else "")
            + (", class-balanced" if subset["balanced"] else "")
        )
    return info
