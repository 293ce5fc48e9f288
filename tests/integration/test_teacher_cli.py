"""`kdgan teacher train / eval` end to end, then a GAN trained with the teacher it wrote."""

from __future__ import annotations

import json

from kdgan.training.checkpoint import load_checkpoint
from tests.conftest import write_image_folder
from tests.integration.test_cli import kdgan


def test_teacher_train_eval_and_kd_training_with_it(tmp_path):
    data = tmp_path / "labelled"
    write_image_folder(data / "train", {"cat": 20, "dog": 20}, seed=0)
    write_image_folder(data / "test", {"cat": 5, "dog": 5}, seed=1)
    gan = write_image_folder(tmp_path / "gan", {"cat": 6}, seed=0)  # the GAN's images: the first 6 cats

    out = kdgan("teacher", "train", "--data", data, "--exclude", gan, "--outdir", tmp_path / "teacher",
                "--epochs", "1", "--width", "2", "--blocks", "1", "--batch-size", "8")
    assert "2 classes, 31 training images (6 excluded), validation accuracy" in out.stdout
    assert "test accuracy" in out.stdout and "(10 test images)" in out.stdout
    assert "epoch 1/1" in out.stderr and "excluded 6 of 40 images" in out.stderr
    info = json.loads((tmp_path / "teacher" / "teacher.json").read_text())
    assert info["class_names"] == ["cat", "dog"] and info["exclusion"]["excluded_images"] == 6

    res = json.loads(kdgan("teacher", "eval", tmp_path / "teacher", "--data", data, "--json").stdout)
    assert res["images"] == 10 and res["accuracy"] == info["test_accuracy"]
    assert set(res["per_class"]) == {"cat", "dog"}

    run = tmp_path / "run"
    out = kdgan("train", "--preset", "tiny", "--data", gan, "--outdir", run, "--batch-size", "4",
                "--steps", "2", "--device", "cpu", "--teacher", "classifier",
                "--teacher-weights", tmp_path / "teacher")
    assert "KD terms agkd+cgkd" in out.stderr
    assert "CGKD prompts (2): a cat; a dog" in out.stderr  # one folder, so unlabelled: the teacher's classes
    ckpt = load_checkpoint(run / "checkpoints" / "ckpt-000000002.pt")
    assert ckpt["kd_teacher"]["weights_sha256"] in out.stderr
    assert ckpt["config"]["teacher"] == "classifier" and ckpt["nets"]["D"]["config"]["kd_dim"] == 8


def test_teacher_bad_input_is_one_clear_line(tmp_path):
    gan = write_image_folder(tmp_path / "gan", {"cat": 6}, seed=0)
    proc = kdgan("teacher", "train", "--data", gan / "cat", "--outdir", tmp_path / "t", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "has no class labels" in proc.stderr
