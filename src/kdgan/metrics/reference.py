"""Inception features of image sets, and a content-addressed on-disk cache for reference sets.

The cache key is sha256(content hash of the pixels and labels | extractor | resize), so
the same data under another path reuses it and changed data never does. A small index
maps (path, size, mtime) to the content hash, so a hit needs no decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kdgan.data import ImageSet, load_images
from kdgan.errors import KdganError
from kdgan.metrics.compute import fid_statistics
from kdgan.metrics.inception import RESIZE, InceptionFeatures

log = logging.getLogger(__name__)
CACHE_VERSION = 1
ALL_IMAGES = "all"  # the split recorded for a source without split folders: all of its images
ESTIMATE_ABOVE_S = 60.0  # extractions expected to take longer than this announce their duration
_clock = time.monotonic  # the clock of the duration estimate (tests replace it)


def describe_source(source: str, split: str | None) -> str:
    """'cifar10, split test' or 'lfw-faces, all images' (a source without split folders)."""
    return f"{source}, all images" if split in (None, ALL_IMAGES) else f"{source}, split {split}"


def cache_dir() -> Path:
    """$KDGAN_CACHE_DIR/refstats, default ~/.cache/kdgan/refstats."""
    root = Path(os.environ.get("KDGAN_CACHE_DIR", Path.home() / ".cache" / "kdgan"))
    return root / "refstats"


@dataclass
class FeatureSet:
    """Features of one image set: pool3 (N, 2048) float32, logits (N, 1008) or None, FID stats."""

    pool3: torch.Tensor
    logits: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _stats: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pool3)

    @property
    def stats(self) -> dict[str, np.ndarray]:
        if self._stats is None:
            self._stats = fid_statistics(self.pool3)
        return self._stats


def feature_batch_size(device: torch.device | str) -> int:
    """Default images per Inception forward: 16 on CPU, 200 on a GPU.

    On the 2-core CPU VM, batches of 8-16 run at 9.7-9.8 images/s and batches of 100 at
    6.7 (the 299x299 activations of a large batch fall out of cache). Features do not
    depend on the batch size (tested).
    """
    return 200 if torch.device(device).type == "cuda" else 16


def extract_features(images: np.ndarray, extractor: InceptionFeatures, batch_size: int | None = None,
                     desc: str = "features", partial: Path | None = None,
                     save_every_s: float = 300.0) -> FeatureSet:
    """Features of uint8 images (N, H, W, 3), in batches, with a progress bar in images.

    With `partial`, the features computed so far are saved there (atomically) every
    `save_every_s` seconds, and a later call with the same file continues where it stopped:
    a 60k-image extraction on a CPU takes hours and must survive an interruption.
    """
    batch_size = batch_size or feature_batch_size(extractor.device)
    pool3, logits = [], []
    done = 0
    if partial is not None and partial.exists():
        with np.load(partial, allow_pickle=False) as z:
            if int(z["num_total"]) == len(images) and len(z["pool3"]) <= len(images):
                pool3.append(torch.from_numpy(z["pool3"]))
                if "logits" in z.files:
                    logits.append(torch.from_numpy(z["logits"]))
                done = len(z["pool3"])
                log.info("continuing %s from image %d of %d (%s)", desc, done, len(images), partial)
    bar = tqdm(total=len(images), initial=done, desc=desc, unit="img", leave=False,
               disable=len(images) <= batch_size)
    last_save = time.monotonic()
    for i, start in enumerate(range(done, len(images), batch_size)):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2)
        t0 = _clock()
        out = extractor(x)
        if i == 1:  # the second batch: the first pays one-off set-up (graph freezing, caches)
            _announce_duration(desc, len(images) - start, len(x) / max(_clock() - t0, 1e-9))
        pool3.append(out["pool3"])
        if "logits" in out:
            logits.append(out["logits"])
        bar.update(len(x))
        if partial is not None and time.monotonic() - last_save > save_every_s:
            _save_partial(partial, pool3, logits, len(images))
            last_save = time.monotonic()
    bar.close()
    return FeatureSet(torch.cat(pool3), torch.cat(logits) if logits else None)


def _announce_duration(desc: str, remaining: int, images_per_s: float) -> None:
    """Log how long the rest of an extraction will take, when that is longer than a minute."""
    seconds = remaining / images_per_s
    if seconds >= ESTIMATE_ABOVE_S:
        log.info("%s: about %d min for the remaining %d images (%.1f images/s)", desc,
                 max(1, round(seconds / 60)), remaining, images_per_s)


def _save_partial(path: Path, pool3: list[torch.Tensor], logits: list[torch.Tensor], total: int) -> None:
    pool3[:] = [torch.cat(pool3)]
    arrays = {"pool3": pool3[0].numpy(), "num_total": np.int64(total)}
    if logits:
        logits[:] = [torch.cat(logits)]
        arrays["logits"] = logits[0].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda p: np.savez(open(p, "wb"), **arrays))


def _identity(source: str, split: str) -> str | None:
    path = Path(source)
    if not path.exists():
        return f"name:{source}|{split}"  # built-in names: content fixed by the package version
    st = path.stat()
    return f"path:{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}" if path.is_file() else None


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _load_reference(source: str, split: str) -> ImageSet:
    """The reference images, refusing a source that lacks the protocol's split."""
    dataset, skipped = load_images(source, split=split)
    have = dataset.meta.get("split")
    if split != "train" and have != split:
        raise KdganError(
            f"the protocol compares with the {split!r} split, but {source} has "
            f"{'only the ' + repr(have) + ' split' if have else 'no split folders'}; pass the full "
            f"data (with {split}/) as the reference (--ref, or --set eval_ref=...) or use --ref-split"
        )
    if skipped:
        raise KdganError(f"{len(skipped)} unreadable reference image(s) in {source}, e.g. "
                         f"{skipped[0][0]}: {skipped[0][1]}; fix or remove them")
    return dataset


def reference_features(source: str, split: str, extractor: InceptionFeatures,
                       batch_size: int | None = None, use_cache: bool = True,
                       dataset: ImageSet | None = None, desc: str = "reference") -> FeatureSet:
    """Features of an image set (a data source's split) at its native resolution, cached on disk.

    `info` records source, split, content hash, number of images and whether the cache hit.
    An interrupted extraction continues from its last partial save (every 5 minutes).
    """
    folder = cache_dir()
    index_path = folder / "index.json"
    index = json.loads(index_path.read_text()) if use_cache and index_path.exists() else {}
    ident = _identity(source, split)
    content = index.get(ident) if ident else None
    if content is None or dataset is not None:
        if dataset is None:
            dataset = _load_reference(source, split)
        content = {"sha256": dataset.content_hash(), "num_images": len(dataset),
                   "split": dataset.meta.get("split")}
    key_text = f"{content['sha256']}|{extractor.name}|{RESIZE}|v{CACHE_VERSION}"
    key = hashlib.sha256(key_text.encode()).hexdigest()
    file = folder / f"{key[:32]}.npz"
    info = {"source": str(source), "split": content["split"] or ALL_IMAGES,
            "content_sha256": content["sha256"], "num_images": content["num_images"], "cache_file": str(file)}
    if use_cache and file.exists():
        with np.load(file, allow_pickle=False) as z:
            logits = torch.from_numpy(z["logits"]) if "logits" in z.files else None
            stats = {"mu": z["mu"], "sigma": z["sigma"]} if "mu" in z.files else None
            fs = FeatureSet(torch.from_numpy(z["pool3"]), logits, {**info, "cache": "hit"}, stats)
        log.info("%s features of %s from the cache %s", desc, describe_source(source, content["split"]), file)
        return fs
    if dataset is None:
        dataset = _load_reference(source, split)
    log.info("computing %s features of %d images of %s", desc, len(dataset),
             describe_source(source, content["split"]))
    partial = folder / f"{key[:32]}.partial.npz" if use_cache else None
    fs = extract_features(dataset.images, extractor, batch_size, desc=f"{desc} features", partial=partial)
    fs.info = {**info, "cache": "miss" if use_cache else "off"}
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        stats = fs.stats if getattr(extractor, "fid_stats", True) else {}  # none for VGG P/R features
        arrays = {"pool3": fs.pool3.numpy(), **stats}
        if fs.logits is not None:
            arrays["logits"] = fs.logits.numpy()
        _atomic_write(file, lambda p: np.savez(open(p, "wb"), **arrays))
        if ident:
            index = json.loads(index_path.read_text()) if index_path.exists() else {}
            index[ident] = content
            _atomic_write(index_path, lambda p: p.write_text(json.dumps(index, indent=1)))
        if partial is not None and partial.exists():
            partial.unlink()
    return fs
