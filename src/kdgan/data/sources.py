"""Read images from any supported source into an ImageSet, with clear errors for bad input."""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdgan.data.imageset import ImageSet
from kdgan.errors import KdganError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
DATASET_JSON = "dataset.json"
DATASET_FORMAT = "kdgan-dataset/1"


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith("._")


def to_rgb_square(img: Image.Image, resolution: int | None) -> Image.Image:
    """Any PIL image -> RGB, centre-cropped to a square, resized to `resolution` if given."""
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if resolution is not None and img.size[0] != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def decode_image(data: bytes, name: str, resolution: int | None) -> np.ndarray:
    """Bytes of an image file -> uint8 (H, W, 3); raises ValueError naming what is wrong."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # forces a full decode, so truncated files fail here
            return np.asarray(to_rgb_square(img, resolution), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("not an image (cannot identify the file format)") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None


class _Entries:
    """Files of a folder or a zip, addressed by relative POSIX path."""

    def __init__(self, names: list[str], read: Callable[[str], bytes], where: str):
        self.names = names
        self.read = read
        self.where = where


def _open_entries(path: Path) -> _Entries:
    if path.is_dir():
        names = sorted(
            p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
        )
        return _Entries(names, lambda n: (path / n).read_bytes(), str(path))
    if not zipfile.is_zipfile(path):
        raise KdganError(
            f"{path} is not a zip file, an image folder or a CIFAR archive; "
            "pass a folder of images, a .zip of images, or a `kdgan data prepare` output"
        )
    zf = zipfile.ZipFile(path)
    names = sorted(n for n in zf.namelist() if not n.endswith("/"))
    return _Entries(names, zf.read, str(path))


def _strip_common_root(names: list[str]) -> tuple[str, list[str]]:
    """Drop one leading folder shared by every image (e.g. a zip made of a folder)."""
    parts = [n.split("/", 1) for n in names]
    if names and all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) == 1:
        root = parts[0][0]
        if root.lower() not in SPLIT_NAMES:
            return root + "/", [p[1] for p in parts]
    return "", names


def load_images(
    src: str | os.PathLike,
    split: str = "train",
    resolution: int | None = None,
    strict: bool = False,
) -> tuple[ImageSet, list[tuple[str, str]]]:
    """Load every image of a source.

    Args:
        src: a built-in name (`lfw-faces`, `cifar10`, `cifar100`), a few-shot set name
            (`obama`, `grumpy-cat`, `panda`, `animalface-cat`, `animalface-dog`, downloaded
            once when online; see kdgan.data.fewshot), an image folder, a zip of
            images, a CIFAR python archive, or a `kdgan data prepare` output (zip or folder).
            Class labels come from sub-folders; `train/<class>/...` and `test/<class>/...`
            layouts are read by `split`.
        split: which split folder to read when the source has them.
        resolution: output side in px; None keeps the source size (all images must agree).
        strict: raise on the first unreadable file instead of skipping it.

    Returns:
        The image set and a list of (file, reason) for every skipped file.
    """
    from kdgan.data import builtin, cifar, fewshot

    name = str(src)
    if name in builtin.BUILTIN:
        return builtin.load(name, resolution), []
    if name in cifar.CIFAR_NAMES or cifar.is_cifar_archive(name):
        return cifar.load(name, split, resolution), []
    path = Path(name).expanduser()
    if not path.exists() and fewshot.canonical(name):
        path = fewshot.fetch(name)
    if not path.exists():
        names = [*builtin.BUILTIN, *cifar.CIFAR_NAMES, *fewshot.ALIASES]
        raise KdganError(
            f"data path {path} does not exist; pass an image folder, a zip, a CIFAR archive, "
            f"or a dataset name ({', '.join(names)})"
        )
    entries = _open_entries(path)
    if DATASET_JSON in entries.names:
        meta = _read_dataset_json(entries)
        if meta is not None:
            return _load_prepared(entries, meta, resolution), []
    return _load_image_tree(entries, split, resolution, strict)


def _read_dataset_json(entries: _Entries) -> dict | None:
    """The dataset.json of a `kdgan data prepare` output, or None when the file is someone else's."""
    try:
        meta = json.loads(entries.read(DATASET_JSON))
    except (ValueError, OSError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == DATASET_FORMAT else None


def source_splits(src: str | os.PathLike) -> tuple[str, ...]:
    """The split folders a source offers (CIFAR: train and test), () when it is one unsplit set;
    cheap (reads names only), for checking a command before it runs."""
    from kdgan.data import builtin, cifar, fewshot

    name = str(src)
    if name in builtin.BUILTIN:
        return ()
    if name in cifar.CIFAR_NAMES or cifar.is_cifar_archive(name):
        return ("train", "test")
    path = Path(name).expanduser()
    if not path.exists():
        if fewshot.canonical(name):
            return ()  # the published few-shot zips hold one set of images
        raise KdganError(f"data path {path} does not exist; pass an image folder, a zip, a CIFAR archive, "
                         "or a dataset name")
    entries = _open_entries(path)
    if DATASET_JSON in entries.names:
        meta = _read_dataset_json(entries)
        if meta is not None:
            return (meta["split"],) if meta.get("split") else ()
    names = [n for n in entries.names if is_image_name(n)]
    _, rel = _strip_common_root(names)
    tops = {r.split("/", 1)[0] for r in rel if "/" in r}
    return tuple(sorted(tops)) if tops and all(t.lower() in SPLIT_NAMES for t in tops) else ()


def _decode_all(
    entries: _Entries, names: list[str], resolution: int | None, strict: bool
) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    def work(n: str) -> np.ndarray | str:
        try:
            return decode_image(entries.read(n), n, resolution)
        except ValueError as e:
            return str(e)

    # PIL releases the GIL while decoding, so threads give a real speed-up.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(work, names, chunksize=64))
    arrays: list[np.ndarray | None] = []
    skipped: list[tuple[str, str]] = []
    for n, r in zip(names, results, strict=True):
        if isinstance(r, str):
            if strict:
                raise KdganError(
                    f"{entries.where}: {n}: {r}; remove or replace the file, or drop --strict "
                    "to skip unreadable files"
                )
            skipped.append((n, r))
            arrays.append(None)
        else:
            arrays.append(r)
    return arrays, skipped


def _load_image_tree(
    entries: _Entries, split: str, resolution: int | None, strict: bool
) -> tuple[ImageSet, list[tuple[str, str]]]:
    names = [n for n in entries.names if is_image_name(n)]
    if not names:
        raise KdganError(
            f"{entries.where} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
            "point --data at a folder or zip that contains images"
        )
    prefix, rel = _strip_common_root(names)
    tops = {r.split("/", 1)[0] for r in rel if "/" in r}
    has_splits = bool(tops) and all(t.lower() in SPLIT_NAMES for t in tops)
    if has_splits:
        if split not in tops:
            raise KdganError(
                f"{entries.where} has splits {', '.join(sorted(tops))} but not {split!r}; "
                f"choose one with --split"
            )
        keep = [(n, r.split("/", 1)[1]) for n, r in zip(names, rel, strict=True)
                if r.startswith(split + "/")]
        names, rel = [k[0] for k in keep], [k[1] for k in keep]
    labelled = all("/" in r for r in rel)
    arrays, skipped = _decode_all(entries, names, resolution, strict)
    ok = [i for i, a in enumerate(arrays) if a is not None]
    if not ok:
        raise KdganError(
            f"{entries.where}: none of the {len(names)} image files could be read "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    sizes = {arrays[i].shape for i in ok}
    if len(sizes) > 1:
        examples = ", ".join(f"{names[i]} {arrays[i].shape[1]}x{arrays[i].shape[0]}"
                             for i in ok[:1] + [j for j in ok if arrays[j].shape != arrays[ok[0]].shape][:1])
        raise KdganError(
            f"{entries.where}: images have different sizes ({examples}); "
            "pass --resolution to resize them all to one size"
        )
    images = np.stack([arrays[i] for i in ok])
    labels, class_names = None, []
    if labelled:
        folders = [rel[i].split("/", 1)[0] for i in ok]
        class_names = sorted(set(folders))
        index = {c: k for k, c in enumerate(class_names)}
        labels = np.array([index[f] for f in folders], dtype=np.int64)
    meta = {"source": entries.where, "split": split if has_splits else None}
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s", len(skipped), entries.where)
    return ImageSet(images, labels, class_names, meta), [(prefix + n, r) for n, r in skipped]


def _load_prepared(entries: _Entries, meta: dict, resolution: int | None) -> ImageSet:
    files = meta["files"]
    arrays, skipped = _decode_all(entries, files, resolution, strict=False)
    if skipped:
        raise KdganError(
            f"{entries.where} is a damaged kdgan dataset ({skipped[0][0]}: {skipped[0][1]}); "
            "run `kdgan data prepare` again"
        )
    labels = meta.get("labels")
    return ImageSet(
        np.stack(arrays),
        None if labels is None else np.asarray(labels, dtype=np.int64),
        list(meta.get("class_names") or []),
        {k: v for k, v in meta.items() if k not in ("files", "labels")},
    )
