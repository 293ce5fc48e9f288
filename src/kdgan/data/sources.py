"""Read images from any supported source into an ImageSet, with clear errors for bad input."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kdgan.data.imageset import ImageSet
from kdgan.errors import KdganError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
DATASET_JSON = "dataset.json"
DATASET_FORMAT = "kdgan-dataset/1"
MAX_FILE_BYTES = 256 << 20  # larger files are skipped unread: no training image needs more
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # larger images are skipped before decoding
_EXIF_ORIENTATION = 0x0112


def is_image_name(name: str) -> bool:
    """An image file by its suffix, leaving out macOS resource forks (`._x.png`, `__MACOSX/`)."""
    return (name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith("._")
            and "__MACOSX" not in name.split("/"))


def display_name(name: str) -> str:
    """A file or folder name safe to print and store: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def to_rgb_square(img: Image.Image, resolution: int | None) -> Image.Image:
    """Any PIL image -> RGB, centre-cropped to a square, resized to `resolution` if given."""
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit: keep the 8 most significant bits
        wide = np.asarray(img).astype(np.int64)
        img = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
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


def _upright(img: Image.Image) -> Image.Image:
    """The image as a viewer shows it: the EXIF orientation (camera rotation) applied."""
    try:
        if img.getexif().get(_EXIF_ORIENTATION, 1) in range(2, 9):
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - damaged EXIF: the pixels are still good, keep them as stored
        pass
    return img


class _Refused(Exception):
    """A file refused before decoding (the reason is the message)."""


def decode_image(data: bytes, name: str, resolution: int | None) -> np.ndarray:
    """Bytes of an image file -> uint8 (H, W, 3); raises ValueError naming what is wrong.

    Any file is safe to pass: images above MAX_PIXELS (decompression bombs) are refused before
    decoding, and whatever Pillow raises on a malformed file becomes the ValueError's reason.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise _Refused(f"too large: {w}x{h} pixels, more than {MAX_PIXELS:,}; shrink it first")
            img.load()  # forces a full decode, so truncated files fail here
            return np.asarray(to_rgb_square(_upright(img), resolution), dtype=np.uint8)
    except _Refused as e:
        raise ValueError(str(e)) from None
    except UnidentifiedImageError:
        raise ValueError("not an image (cannot identify the file format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"too large, a possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ValueError("too large to decode in memory") from None
    except Exception as e:  # noqa: BLE001 - a malformed file can make a decoder raise anything
        raise ValueError(f"cannot be decoded ({type(e).__name__}: {e})") from None


class _Entries:
    """Files of a folder or a zip, addressed by relative POSIX path; `rejected` lists entries
    that are never read (unsafe archive paths, broken links) with the reason."""

    def __init__(self, names: list[str], read: Callable[[str], bytes], size: Callable[[str], int],
                 where: str, rejected: list[tuple[str, str]] | None = None):
        self.names = names
        self._known = set(names)
        self._read = read
        self._size = size
        self.where = where
        self.rejected = rejected or []

    def _check(self, name: str) -> None:
        if name not in self._known:  # e.g. a dataset.json naming ../../somewhere
            raise KdganError(f"{self.where} has no file {display_name(name)!r}")

    def read(self, name: str) -> bytes:
        self._check(name)
        return self._read(name)

    def size(self, name: str) -> int:
        self._check(name)
        return self._size(name)


def _open_entries(path: Path) -> _Entries:
    if path.is_dir():
        names, rejected = [], []
        for p in path.rglob("*"):
            rel = p.relative_to(path).as_posix()
            if p.is_file():
                names.append(rel)
            elif p.is_symlink() and not p.exists() and is_image_name(rel):
                rejected.append((display_name(rel), "broken symbolic link"))
        return _Entries(sorted(names), lambda n: (path / n).read_bytes(), lambda n: (path / n).stat().st_size,
                        str(path), rejected)
    if not zipfile.is_zipfile(path):
        raise KdganError(
            f"{path} is not a zip file, an image folder or a CIFAR archive; "
            "pass a folder of images, a .zip of images, or a `kdgan data prepare` output"
        )
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise KdganError(f"{path} is a damaged zip file ({e}); make it again, or pass the images as a "
                         "folder") from None
    members: dict[str, zipfile.ZipInfo] = {}
    rejected = []
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/")  # archives made on Windows may use backslashes
        parts = [part for part in name.split("/") if part not in ("", ".")]
        unsafe = name.startswith("/") or ".." in parts or (parts and parts[0].endswith(":"))
        if unsafe or not parts:
            if is_image_name(name):
                rejected.append((info.filename, "unsafe path in the archive (absolute or with ..), not read"))
            continue
        members["/".join(parts)] = info
    return _Entries(sorted(members), lambda n: zf.read(members[n]), lambda n: members[n].file_size,
                    str(path), rejected)


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


def split_available(splits: tuple[str, ...], split: str) -> bool:
    """Whether a source with these `source_splits` offers `split`: an unsplit source is all 'train'."""
    return split in splits if splits else split == "train"


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
            size = entries.size(n)
            if size > MAX_FILE_BYTES:
                return f"too large: {size:,} bytes, more than {MAX_FILE_BYTES:,}; not read"
            data = entries.read(n)
        except Exception as e:  # noqa: BLE001 - permissions, encrypted or damaged archive members, ...
            return f"cannot be read ({type(e).__name__}: {e})"
        try:
            return decode_image(data, n, resolution)
        except ValueError as e:
            return str(e)

    # PIL releases the GIL while decoding, so threads give a real speed-up. Images between Pillow's
    # warning and error limits are refused by MAX_PIXELS, so its warning would only be noise.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = list(pool.map(work, names, chunksize=64))
    arrays: list[np.ndarray | None] = []
    skipped: list[tuple[str, str]] = []
    for n, r in zip(names, results, strict=True):
        if isinstance(r, str):
            if strict:
                raise KdganError(
                    f"{entries.where}: {display_name(n)}: {r}; remove or replace the file, or drop --strict "
                    "to skip unreadable files"
                )
            skipped.append((display_name(n), r))
            arrays.append(None)
        else:
            arrays.append(r)
    return arrays, skipped


def _load_image_tree(
    entries: _Entries, split: str, resolution: int | None, strict: bool
) -> tuple[ImageSet, list[tuple[str, str]]]:
    names = [n for n in entries.names if is_image_name(n)]
    if strict and entries.rejected:
        n, r = entries.rejected[0]
        raise KdganError(f"{entries.where}: {n}: {r}; remove the entry, or drop --strict to skip it")
    if not names:
        raise KdganError(
            f"{entries.where} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            + (f" that can be read safely ({entries.rejected[0][0]}: {entries.rejected[0][1]})"
               if entries.rejected else "")
            + "; point --data at a folder or zip that contains images"
        )
    _, rel = _strip_common_root(names)
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
    skipped = entries.rejected + skipped  # names as stored (display-safe), root folder included
    if not ok:
        raise KdganError(
            f"{entries.where}: none of the {len(names)} image files could be read "
            f"(first: {skipped[0][0]}: {skipped[0][1]}); point --data at readable images"
        )
    sizes = {arrays[i].shape for i in ok}
    if len(sizes) > 1:
        examples = ", ".join(f"{display_name(names[i])} {arrays[i].shape[1]}x{arrays[i].shape[0]}"
                             for i in ok[:1] + [j for j in ok if arrays[j].shape != arrays[ok[0]].shape][:1])
        raise KdganError(
            f"{entries.where}: images have different sizes ({examples}); "
            "pass --resolution to resize them all to one size"
        )
    images = np.stack([arrays[i] for i in ok])
    labels, class_names = None, []
    if labelled:
        folders = [display_name(rel[i].split("/", 1)[0]) for i in ok]
        class_names = sorted(set(folders))
        index = {c: k for k, c in enumerate(class_names)}
        labels = np.array([index[f] for f in folders], dtype=np.int64)
    meta = {"source": entries.where, "split": split if has_splits else None}
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s", len(skipped), entries.where)
    return ImageSet(images, labels, class_names, meta), skipped


def _load_prepared(entries: _Entries, meta: dict, resolution: int | None) -> ImageSet:
    files, labels = meta.get("files"), meta.get("labels")
    if not (isinstance(files, list) and files and all(isinstance(f, str) for f in files)
            and (labels is None or (isinstance(labels, list) and len(labels) == len(files)))):
        raise KdganError(f"{entries.where} is a damaged kdgan dataset (its dataset.json lists no files, or "
                         "labels that do not match them); run `kdgan data prepare` again")
    arrays, skipped = _decode_all(entries, files, resolution, strict=False)
    if skipped:
        raise KdganError(
            f"{entries.where} is a damaged kdgan dataset ({skipped[0][0]}: {skipped[0][1]}); "
            "run `kdgan data prepare` again"
        )
    return ImageSet(
        np.stack(arrays),
        None if labels is None else np.asarray(labels, dtype=np.int64),
        list(meta.get("class_names") or []),
        {k: v for k, v in meta.items() if k not in ("files", "labels")},
    )
