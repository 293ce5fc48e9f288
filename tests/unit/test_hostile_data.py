"""A corpus of hostile inputs: every bad file is skipped and listed (or the source is one clear
KdganError), never a traceback, and every good image is kept."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdgan.data import load_images
from kdgan.data.sources import MAX_FILE_BYTES
from kdgan.errors import KdganError


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds almost no pixel data (a decompression bomb's
    header: Pillow reads the size before any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) \
        + chunk(b"IEND", b"")


def rgb(seed: int, size: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def good_files() -> dict[str, bytes]:
    """Unusual but good images: each must be kept."""
    gradient = (np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100)  # 16-bit grey, up to 57,500
    pal = Image.new("P", (24, 24), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    anim = io.BytesIO()
    frames[0].save(anim, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    top_white = np.zeros((16, 24, 3), np.uint8)  # stored landscape, top half white
    top_white[:8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was rotated: viewers turn it 90 degrees clockwise
    return {
        "plain.png": png_bytes(rgb(0)),
        "cmyk.jpg": png_bytes(Image.new("CMYK", (24, 24), (0, 200, 0, 0)), "JPEG"),
        "gray-alpha.png": png_bytes(Image.new("LA", (24, 24), (90, 0))),
        "palette-transparent.png": png_bytes(pal, transparency=0),
        "one-bit.png": png_bytes(Image.new("1", (24, 24), 1)),
        "sixteen-bit.png": png_bytes(Image.fromarray(gradient)),
        "animated.gif": anim.getvalue(),
        "rotated.jpg": png_bytes(Image.fromarray(top_white), "JPEG", exif=exif, quality=95),
        "wide.png": png_bytes(rgb(1, 24).resize((48, 24))),
        "nested/deeper/inner.png": png_bytes(rgb(2)),
        "UPPER.PNG": png_bytes(rgb(3)),
    }


def bad_files(tmp: Path) -> dict[str, bytes]:
    """Files that must be skipped and listed, each with its reason."""
    good = png_bytes(rgb(4))
    jpeg = png_bytes(rgb(5), "JPEG")
    return {
        "truncated.png": good[: len(good) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "zero-bytes.png": b"",
        "text.jpg": b"this is not an image at all",
        "html.png": b"<html><body>404 not found</body></html>",
        "header-only.png": good[:40],
        "random.gif": np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "bomb.png": png_header_only(30_000, 30_000),  # 900M pixels: Pillow's DecompressionBombError
        "huge.png": png_header_only(10_000, 10_000),  # 100M pixels: above the limit, below Pillow's error
        "wrong-suffix.png": b"GIF89a" + b"\0" * 20,
    }


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    goods = {f"good/{n}": b for n, b in good_files().items()}
    goods["other/b.png"] = png_bytes(rgb(6))
    bads = {f"bad/{n}": b for n, b in bad_files(tmp_path).items()}
    for name, data in {**goods, **bads}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    with open(root / "bad" / "sparse.png", "wb") as f:  # larger than MAX_FILE_BYTES, costs no disk
        f.truncate(MAX_FILE_BYTES + 1)
    bads["bad/sparse.png"] = b""
    os.symlink(root / "good" / "plain.png", root / "good" / "link.png")  # a link to a good image: kept
    goods["good/link.png"] = goods["good/plain.png"]
    os.symlink(root / "missing.png", root / "bad" / "broken-link.png")
    bads["bad/broken-link.png"] = b""
    os.symlink(root, root / "good" / "loop")  # a folder link back to the root: not followed
    (root / "good" / "._plain.png").write_bytes(b"\0\5\x16\7 AppleDouble")  # macOS junk: ignored
    (root / "__MACOSX" / "good").mkdir(parents=True)
    (root / "__MACOSX" / "good" / "._plain.png").write_bytes(b"\0\5\x16\7")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "good" / "notes.txt").write_text("not an image suffix: ignored")
    weird = os.fsencode(root / "good") + b"/caf\xe9-latin1.png"  # a name that is not UTF-8
    with open(weird, "wb") as f:
        f.write(png_bytes(rgb(7)))
    goods["good/caf\ufffd-latin1.png"] = b""
    weird_dir = os.fsencode(root) + b"/\xff\xfeclass"
    os.mkdir(weird_dir)
    with open(weird_dir + b"/x.png", "wb") as f:
        f.write(png_bytes(rgb(8)))
    goods["\ufffd\ufffdclass/x.png"] = b""
    return root, goods, bads


def test_folder_corpus_keeps_every_good_image_and_lists_every_bad_file(corpus):
    root, goods, bads = corpus
    ds, skipped = load_images(root, resolution=16)
    assert len(ds) == len(goods) and ds.images.shape[1:] == (16, 16, 3)
    assert ds.class_names == ["good", "other", "\ufffd\ufffdclass"]  # no 'bad': none of its files is good
    reasons = dict(skipped)
    assert set(reasons) == set(bads), set(reasons) ^ set(bads)
    assert "too large" in reasons["bad/bomb.png"] and "decompression bomb" in reasons["bad/bomb.png"]
    assert "too large: 10000x10000 pixels" in reasons["bad/huge.png"]
    assert "not read" in reasons["bad/sparse.png"]
    assert "broken symbolic link" in reasons["bad/broken-link.png"]
    assert "truncated" in reasons["bad/truncated.png"] and "not an image" in reasons["bad/text.jpg"]


def test_unusual_modes_decode_to_what_a_viewer_shows(tmp_path):
    for name, data in good_files().items():
        (tmp_path / Path(name).name).write_bytes(data)
    ds, skipped = load_images(tmp_path, resolution=24)
    assert skipped == []
    by_name = dict(zip(sorted(Path(n).name for n in good_files()), ds.images, strict=True))
    sixteen = by_name["sixteen-bit.png"][..., 0].astype(int)
    expected = np.arange(24 * 24).reshape(24, 24) * 100 >> 8  # the 8 most significant of 16 bits
    assert np.abs(sixteen - expected).max() <= 1 and sixteen.max() > 200  # not clipped to white
    assert (by_name["animated.gif"][..., 0] > 200).all() and (by_name["animated.gif"][..., 2] < 50).all()
    rotated = by_name["rotated.jpg"].astype(int).mean(axis=(0, 2))  # column means: turned upright,
    assert rotated[:6].mean() < 40 and rotated[-6:].mean() > 215  # the white half is now on the right
    assert (by_name["palette-transparent.png"][..., 0] == 200).all()
    assert (by_name["one-bit.png"] == 255).all() and (by_name["gray-alpha.png"] == 90).all()


def _hostile_zip(path: Path) -> None:
    good = png_bytes(rgb(9))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good/", b"")  # a folder entry
        for name in ("good/a.png", "good\\b.png", "./good/c.png", "good//d.png", "other/e.png",
                     "../evil.png", "/abs/evil.png", "C:/evil.png", "good/../../evil2.png",
                     "__MACOSX/good/._a.png", "good/encrypted.png", "good/bad-crc.png"):
            zf.writestr(name, good, compress_type=zipfile.ZIP_STORED)
        with zf.open("good/bomb.png", "w", force_zip64=True) as f:  # 256 MiB of zeros, ~256 KiB stored
            zeros = bytes(1 << 20)
            for _ in range((MAX_FILE_BYTES >> 20) + 1):
                f.write(zeros)
    data = bytearray(path.read_bytes())
    name = b"good/encrypted.png"  # set the 'encrypted' flag bit in its local and central headers
    at = -1
    while (at := data.find(name, at + 1)) >= 0:
        if data[at - 30:at - 26] == b"PK\x03\x04":
            data[at - 24] |= 1
        elif data[at - 46:at - 42] == b"PK\x01\x02":
            data[at - 38] |= 1
    crc_name = b"good/bad-crc.png"  # flip a pixel byte of a stored entry: its CRC no longer matches
    at = data.find(crc_name)  # the first occurrence is its local header; the data follows the name
    assert data[at - 30:at - 26] == b"PK\x03\x04"
    data[at + len(crc_name) + 40] ^= 0xFF
    path.write_bytes(bytes(data))


def test_zip_corpus_odd_paths_never_become_classes_and_bad_members_are_listed(tmp_path):
    path = tmp_path / "hostile.zip"
    _hostile_zip(path)
    ds, skipped = load_images(path, resolution=16)
    assert len(ds) == 5 and ds.class_names == ["good", "other"]  # a, b (backslash), c, d; e
    assert np.bincount(ds.labels).tolist() == [4, 1]
    reasons = dict(skipped)
    for unsafe in ("../evil.png", "/abs/evil.png", "C:/evil.png", "good/../../evil2.png"):
        assert "unsafe path" in reasons[unsafe]
    assert "encrypted" in reasons["good/encrypted.png"] and "cannot be read" in reasons["good/bad-crc.png"]
    assert "too large" in reasons["good/bomb.png"] and "not read" in reasons["good/bomb.png"]
    assert len(skipped) == 7


@pytest.mark.parametrize("make,match", [
    (lambda p: zipfile.ZipFile(p, "w").close(), "holds no image files"),
    (lambda p: p.write_bytes(b""), "is not a zip file"),
    (lambda p: p.write_bytes(Path(p.with_name("ok.zip")).read_bytes()[:-30]), "damaged zip file|not a zip"),
    (lambda p: _only_unsafe(p), "unsafe path"),
    (lambda p: _prepared_with(p, {"format": "kdgan-dataset/1", "files": ["../../etc/passwd"]}), "no file"),
    (lambda p: _prepared_with(p, {"format": "kdgan-dataset/1", "files": 3}), "damaged kdgan dataset"),
])
def test_hostile_archives_are_one_clear_error(tmp_path, make, match):
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as zf:
        zf.writestr("a/x.png", png_bytes(rgb(10)))
    path = tmp_path / "src.zip"
    make(path)
    with pytest.raises(KdganError, match=match):
        load_images(path)


def _only_unsafe(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../x.png", png_bytes(rgb(11)))


def _prepared_with(path: Path, meta: dict) -> None:
    import json

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dataset.json", json.dumps(meta))
        zf.writestr("000000.png", png_bytes(rgb(12)))


def test_a_prepared_folder_cannot_point_outside_itself(tmp_path):
    import json

    (tmp_path / "secret.png").write_bytes(png_bytes(rgb(15)))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"format": "kdgan-dataset/1",
                                                             "files": ["../secret.png"]}))
    with pytest.raises(KdganError, match="damaged kdgan dataset .*has no file '../secret.png'"):
        load_images(tmp_path / "d")


def test_a_dataset_json_that_is_not_ours_is_just_a_file(tmp_path):
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("dataset.json", "{ not json")
        zf.writestr("a/x.png", png_bytes(rgb(13)))
        zf.writestr("b/y.png", png_bytes(rgb(14)))
    ds, _ = load_images(tmp_path / "d.zip")
    assert len(ds) == 2 and ds.class_names == ["a", "b"]


def test_damaged_cifar_archives_are_one_clear_error(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 100)
    with pytest.raises(KdganError, match="not a readable CIFAR python archive"):
        load_images(path)
    with tarfile.open(path, "w:gz") as tar:  # a well-formed archive with the wrong contents
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        payload = b"not a pickle"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(KdganError, match="not a readable CIFAR python archive"):
        load_images(path)


def test_prepare_and_train_on_the_corpus_through_the_cli(corpus, tmp_path):
    root, goods, bads = corpus
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "kdgan.cli"]
    out = subprocess.run([*run, "data", "prepare", str(root), "--out", str(tmp_path / "c.zip"),
                          "--resolution", "32"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert f"{len(goods)} images, 32x32, 3 classes" in out.stdout
    assert f"skipped {len(bads)} unreadable file(s)" in out.stdout
    assert "skipped bad/bomb.png: too large" in out.stderr
    info = subprocess.run([*run, "data", "info", str(tmp_path / "c.zip")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert info.returncode == 0 and "\ufffd\ufffdclass: 1" in info.stdout
    strict = subprocess.run([*run, "data", "prepare", str(root), "--out", str(tmp_path / "s.zip"), "--strict",
                             "--resolution", "32"], capture_output=True, text=True, env=env, timeout=600)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert len([ln for ln in strict.stderr.splitlines() if ln.startswith("error:")]) == 1
    train = subprocess.run([*run, "train", "--data", str(root), "--preset", "tiny", "--steps", "1",
                            "--device", "cpu", "--outdir", str(tmp_path / "run")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert train.returncode == 0 and "Traceback" not in train.stderr, train.stderr
    assert "skipped bad/bomb.png" in train.stderr and "done: step 1 of 1" in train.stdout
