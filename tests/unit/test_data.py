import io
import json
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from kdgan.data import load_images, select_subset
from kdgan.data.prepare import describe, prepare
from kdgan.errors import KdganError
from tests.conftest import write_image_folder


def test_folder_labels_from_subfolders(image_folder):
    ds, skipped = load_images(image_folder)
    assert len(ds) == 20 and ds.images.shape == (20, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.class_names == ["cat", "dog"] and np.bincount(ds.labels).tolist() == [12, 8]
    assert skipped == []


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    ds, _ = load_images(tmp_path)
    assert ds.labels is None and ds.num_classes == 0


def test_modes_become_rgb_and_non_square_is_centre_cropped(tmp_path):
    gray = Image.new("L", (40, 20), 100)
    rgba = Image.new("RGBA", (20, 20), (10, 20, 30, 0))
    pal = Image.new("RGB", (20, 20), (200, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # the centre square is white, the sides black
    for name, img in [("g.png", gray), ("a.png", rgba), ("p.png", pal), ("w.png", Image.fromarray(wide))]:
        img.save(tmp_path / name)
    ds, _ = load_images(tmp_path, resolution=16)
    assert ds.images.shape == (4, 16, 16, 3)
    by_name = dict(zip(["a", "g", "p", "w"], ds.images, strict=True))
    assert (by_name["g"] == 100).all() and (by_name["p"][..., 0] == 200).all()
    assert (by_name["w"] == 255).all()


def test_different_sizes_need_a_resolution(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "b.png")
    with pytest.raises(KdganError, match="different sizes.*--resolution"):
        load_images(tmp_path)
    assert load_images(tmp_path, resolution=8)[0].images.shape == (2, 8, 8, 3)


def test_bad_files_are_skipped_and_listed_or_fatal_with_strict(image_folder):
    good = (image_folder / "cat" / "000.png").read_bytes()
    (image_folder / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (image_folder / "dog" / "notes.jpg").write_text("this is not an image")
    (image_folder / "dog" / "README.txt").write_text("ignored: not an image suffix")
    ds, skipped = load_images(image_folder)
    assert len(ds) == 20
    assert {n for n, _ in skipped} == {"cat/truncated.png", "dog/notes.jpg"}
    reasons = dict(skipped)
    assert "truncated" in reasons["cat/truncated.png"] and "not an image" in reasons["dog/notes.jpg"]
    with pytest.raises(KdganError, match="truncated.png.*drop --strict"):
        load_images(image_folder, strict=True)


@pytest.mark.parametrize("make,match", [
    (lambda p: p.mkdir(), "holds no image files"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"PK not really a zip"), "is not a zip file"),
])
def test_bad_sources_give_one_clear_error(tmp_path, make, match):
    path = tmp_path / "src.zip"
    make(path)
    with pytest.raises(KdganError, match=match):
        load_images(path)


def test_zip_with_splits_and_a_root_folder(tmp_path, image_folder):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", 3), ("test", 2)):
            for c in ("cat", "dog"):
                for i in range(n):
                    zf.write(image_folder / c / f"{i:03d}.png", f"root/{split}/{c}/{i}.png")
    train, _ = load_images(path)
    test, _ = load_images(path, split="test")
    assert len(train) == 6 and len(test) == 4 and train.class_names == ["cat", "dog"]
    with pytest.raises(KdganError, match="has splits test, train but not 'val'"):
        load_images(path, split="val")


def test_subsets_are_deterministic_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    a = select_subset(1000, 0.1, seed=3, labels=labels)
    assert np.array_equal(a, select_subset(1000, 0.1, seed=3, labels=labels)) and len(a) == 100
    assert not np.array_equal(a, select_subset(1000, 0.1, seed=4, labels=labels))
    b = select_subset(1000, 0.2, seed=0, labels=labels, balanced=True)
    assert np.bincount(labels[b]).tolist() == [20] * 10
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(KdganError, match="outside"):
            select_subset(1000, bad, seed=0)


def test_prepare_writes_pngs_and_provenance(tmp_path, image_folder):
    out = tmp_path / "ds.zip"
    ds, _ = prepare(str(image_folder), out, resolution=16, fraction=0.5, seed=1, balanced=True)
    with zipfile.ZipFile(out) as zf:
        meta = json.loads(zf.read("dataset.json"))
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 10
    assert meta["subset"]["seed"] == 1 and len(meta["subset"]["indices"]) == 10
    assert meta["class_names"] == ["cat", "dog"] and meta["resolution"] == 16
    again, _ = load_images(out)
    assert again.content_hash() == meta["content_sha256"] == ds.content_hash()
    info = describe(again)
    assert info["per_class"] == {"cat": 6, "dog": 4} and "0.5 of 20 images" in info["subset"]
    with pytest.raises(KdganError, match="must end in .zip"):
        prepare(str(image_folder), tmp_path / "ds.tar")


def _cifar_archive(path, n_train=5, n_test=3):
    rng = np.random.default_rng(0)

    def batch(n):
        return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": rng.integers(0, 10, n).tolist()}

    members = {f"data_batch_{i}": batch(n_train) for i in range(1, 6)}
    members["test_batch"] = batch(n_test)
    members["batches.meta"] = {b"label_names": [c.encode() for c in "abcdefghij"]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return members


def test_cifar_python_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    members = _cifar_archive(path)
    train, _ = load_images(path)
    test, _ = load_images(path, split="test")
    assert len(train) == 25 and len(test) == 3 and train.class_names == list("abcdefghij")
    first = members["data_batch_1"][b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(train.images[0], first)
    assert train.labels[0] == members["data_batch_1"][b"labels"][0]


def test_cifar_archive_refuses_foreign_pickled_objects(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": print})
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(KdganError, match="unexpected object"):
        load_images(path)


def test_builtin_lfw_faces():
    ds, _ = load_images("lfw-faces", resolution=32)
    assert ds.images.shape == (100, 32, 32, 3) and ds.labels is None
    assert (ds.images[..., 0] == ds.images[..., 1]).all()  # grayscale faces as RGB


def test_shared_cifar_jpeg_layout(shared_data):
    ds, skipped = load_images(shared_data / "cifar10-jpeg-10pct.zip", split="test")
    assert len(ds) == 10_000 and ds.num_classes == 10 and not skipped
    assert ds.class_names[0] == "airplane"


def test_write_image_folder_helper_is_deterministic(tmp_path):
    a = write_image_folder(tmp_path / "a", {"x": 2})
    b = write_image_folder(tmp_path / "b", {"x": 2})
    assert (a / "x" / "000.png").read_bytes() == (b / "x" / "000.png").read_bytes()


def test_fewshot_names_read_the_cached_zip_and_fail_clearly_offline(tmp_path, monkeypatch):
    import urllib.request

    from kdgan.data import fewshot

    monkeypatch.setenv("KDGAN_DATA_DIR", str(tmp_path / "data"))

    def offline(url, filename):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(KdganError, match=r"could not download the few-shot set 100-shot-obama .*"
                                         r"hanlab.mit.edu/projects/data-efficient-gans/datasets/100-shot-obama.zip"):
        load_images("obama")
    assert not list((tmp_path / "data").glob("*.part"))
    (tmp_path / "data").mkdir(exist_ok=True)
    with zipfile.ZipFile(tmp_path / "data" / "100-shot-obama.zip", "w") as zf:
        for i in range(3):
            buf = io.BytesIO()
            Image.new("RGB", (40, 40), (i * 50, 10, 10)).save(buf, format="PNG")
            zf.writestr(f"img/{i}.png", buf.getvalue())
    ds, skipped = load_images("obama", resolution=32)
    assert len(ds) == 3 and ds.images.shape[1:] == (32, 32, 3) and not skipped
    assert fewshot.canonical("grumpy-cat") == "100-shot-grumpy_cat" and fewshot.canonical("x") is None


def test_fewshot_download_is_cached_and_a_short_set_warns(tmp_path, monkeypatch, caplog):
    import urllib.request

    def fake_zip(count: int):
        def retrieve(url, filename):
            with zipfile.ZipFile(filename, "w") as zf:
                for i in range(count):
                    buf = io.BytesIO()
                    Image.new("RGB", (40, 40), (i, 10, 10)).save(buf, format="JPEG")
                    zf.writestr(f"panda/{i}.jpg", buf.getvalue())
                zf.writestr("__MACOSX/panda/._0.jpg", b"resource fork")
            calls.append(url)
        return retrieve

    calls: list[str] = []
    monkeypatch.setenv("KDGAN_DATA_DIR", str(tmp_path / "full"))
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_zip(100))
    with caplog.at_level("WARNING", logger="kdgan.data.fewshot"):
        ds, _ = load_images("panda", resolution=32)
        assert len(ds) == 100 and not caplog.records
        load_images("panda", resolution=32)  # cached: no second download
    assert calls == ["https://hanlab.mit.edu/projects/data-efficient-gans/datasets/100-shot-panda.zip"]
    assert (tmp_path / "full" / "100-shot-panda.zip").is_file()

    monkeypatch.setenv("KDGAN_DATA_DIR", str(tmp_path / "short"))
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_zip(7))
    with caplog.at_level("WARNING", logger="kdgan.data.fewshot"):
        ds, _ = load_images("panda", resolution=32)
    assert len(ds) == 7
    assert "holds 7 images, the published set has 100" in caplog.text
