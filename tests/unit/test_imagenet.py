"""ImageNet 64 subsets on a tiny fake ImageNet-layout folder: listing, preparation, presets, training."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kdgan.cli import cli
from kdgan.config import PRESETS, resolve
from kdgan.data import load_images
from kdgan.data.imagenet import prepare_64, prepare_imagenet
from kdgan.errors import KdganError
from kdgan.metrics import get_protocol
from kdgan.training.loop import Trainer

WNIDS = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}


def fake_imagenet(root, per_class=10, val=6, synsets=True):
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(per_class):
            w, h = (90, 70) if i % 2 else (70, 96)  # landscape and portrait, like ImageNet photos
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / wnid / f"{wnid}_{i}.JPEG", quality=90)
    (root / "val").mkdir()
    for i in range(val):  # the raw validation set is flat
        Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(
            root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    if synsets:
        lines = [f"{w} {n}, other name" for w, n in WNIDS.items()]
        (root / "LOC_synset_mapping.txt").write_text("\n".join(lines) + "\n")
    return root


def test_centre_square_and_box_downsample_by_hand():
    img = np.zeros((4, 8, 3), dtype=np.uint8)  # h 4, w 8: the centre square is columns 2..5
    img[:, :2] = 255  # cropped away
    img[:2, 2:4] = [10, 20, 30]
    img[:2, 4:6] = [50, 60, 70]
    img[2:, 2:4] = [100, 100, 100]
    img[2:, 4:6] = [0, 8, 16]
    img[:, 6:] = 255  # cropped away
    out = prepare_64(Image.fromarray(img), 2)  # each output pixel is the mean of a 2 x 2 block
    assert out.tolist() == [[[10, 20, 30], [50, 60, 70]], [[100, 100, 100], [0, 8, 16]]]
    mixed = img.copy()
    mixed[0, 2] = [14, 24, 34]  # one of four pixels +4: the block mean moves by 1
    assert prepare_64(Image.fromarray(mixed), 2)[0, 0].tolist() == [11, 21, 31]


def test_prepare_class_balanced_fraction_with_readable_names(tmp_path):
    root = fake_imagenet(tmp_path / "imagenet")
    ds = prepare_imagenet(root, tmp_path / "in64.zip", fraction=0.5, resolution=64)
    assert len(ds) == 15 and np.bincount(ds.labels).tolist() == [5, 5, 5]
    back, _ = load_images(tmp_path / "in64.zip")
    assert back.images.shape == (15, 64, 64, 3)
    assert back.class_names == ["tench", "goldfish", "great white shark"]
    assert np.array_equal(back.images, ds.images) and np.array_equal(back.labels, ds.labels)
    again = prepare_imagenet(root, tmp_path / "again.zip", fraction=0.5)  # same seed, same subset
    assert np.array_equal(again.images, ds.images)
    other = prepare_imagenet(root, tmp_path / "other.zip", fraction=0.5, seed=1)
    assert not np.array_equal(other.images, ds.images)
    val = prepare_imagenet(root, tmp_path / "val.zip", fraction=1.0, split="val")
    assert len(val) == 6 and val.labels is None


def test_wnids_without_a_synset_list_and_clear_errors(tmp_path):
    root = fake_imagenet(tmp_path / "imagenet", per_class=2, synsets=False)
    ds = prepare_imagenet(root, tmp_path / "a.zip", fraction=1.0)
    assert ds.class_names == sorted(WNIDS)
    with pytest.raises(KdganError, match="does not exist; point at the ImageNet root"):
        prepare_imagenet(tmp_path / "nowhere", tmp_path / "b.zip")
    with pytest.raises(KdganError, match="must end in .zip"):
        prepare_imagenet(root, tmp_path / "b.tar")


def test_cli_prepare_imagenet(tmp_path):
    root = fake_imagenet(tmp_path / "imagenet", per_class=4)
    result = CliRunner().invoke(cli, ["data", "prepare-imagenet", str(root), "--out", str(tmp_path / "x.zip"),
                                      "--fraction", "0.5"])
    assert result.exit_code == 0, result.output
    assert "6 images, 64x64, 3 classes" in result.output


def test_presets_protocol_and_a_training_step_on_the_prepared_subset(tmp_path):
    assert (PRESETS["biggan-imagenet64-10pct-da"].paper_fid, PRESETS["biggan-imagenet64-10pct-da"].paper_is) \
        == (32.82, 12.76)
    assert (PRESETS["biggan-imagenet64-10pct-da-kd"].paper_fid,
            PRESETS["biggan-imagenet64-10pct-da-kd"].paper_is) == (19.99, 14.25)
    names = [f"biggan-imagenet64-{p}pct-{v}" for p in ("10", "5", "2.5")
             for v in ("da", "da-kd", "lecam-da", "lecam-da-kd", "ada", "ada-kd")]
    assert all(n in PRESETS for n in names)
    proto = get_protocol("imagenet")
    assert (proto.num_gen, proto.ref_split, proto.metrics) == (50_000, "val", ("fid", "is"))
    root = fake_imagenet(tmp_path / "imagenet", per_class=4)
    prepare_imagenet(root, tmp_path / "in64.zip", fraction=1.0)
    cfg = resolve("biggan-imagenet64-10pct-da-kd", {
        "data": str(tmp_path / "in64.zip"), "teacher": "clip-tiny-random", "g_ch": 4, "d_ch": 4,
        "batch_size": 4, "steps": 1, "device": "cpu", "eval_every_steps": 0})
    assert (cfg.resolution, cfg.d_steps, cfg.g_lr, cfg.d_lr) == (64, 2, 1e-4, 4e-4)
    t = Trainer(cfg, tmp_path / "run")
    assert t.c_dim == 3 and t.G.config["img_resolution"] == 64
    logs = t.train_step()
    assert {"d/agkd", "d/cgkd"} <= set(logs)
    with pytest.raises(KdganError, match="does not exist"):
        Trainer(resolve("biggan-imagenet64-5pct-da", {"device": "cpu"}), tmp_path / "missing")
