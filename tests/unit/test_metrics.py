import socket

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from kdgan.errors import KdganError
from kdgan.metrics import (
    evaluate,
    extract_features,
    format_table,
    get_protocol,
    load_inception,
    reference_features,
)
from kdgan.metrics.compute import (
    compute_fid,
    compute_is,
    compute_kid,
    compute_precision_recall,
    fid_statistics,
)
from kdgan.metrics.reference import FeatureSet


def fid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Independent float64 FID: ||mu_x - mu_y||^2 + Tr(Sx + Sy - 2 (Sx Sy)^(1/2))."""
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(sx @ sy).real
    return float(((mx - my) ** 2).sum() + np.trace(sx + sy - 2 * covmean))


def kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Independent unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 on the full sets."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


MIX = np.random.default_rng(12345).normal(size=(32, 32)) * 0.3  # one fixed correlated Gaussian


def features(n, shift=0.0, seed=0):
    """n samples of the same 32-d Gaussian (different draws for different seeds)."""
    return np.random.default_rng(seed).normal(size=(n, 32)) @ MIX + shift


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.from_numpy(features(3000))
    value, _ = compute_fid(fid_statistics(x), fid_statistics(x), 3000, 3000)
    assert abs(value) < 1e-6


def test_fid_and_kid_match_independent_float64_computations():
    x, y = features(800, seed=1), features(600, shift=0.2, seed=2)
    fid, _ = compute_fid(fid_statistics(torch.from_numpy(x)), fid_statistics(torch.from_numpy(y)), 800, 600)
    assert fid == pytest.approx(fid_reference(x, y), rel=1e-3)
    # one subset holding every image: the estimator on the full sets (a permutation changes nothing)
    n = 600
    kid, _, _ = compute_kid(torch.from_numpy(x[:n]), torch.from_numpy(y), seed=0, subsets=1, subset_size=n)
    assert kid == pytest.approx(kid_reference(x[:n], y), rel=1e-3)


def test_kid_is_unbiased_and_adapts_its_subset_size():
    # same distribution: an unbiased estimator averages ~0 and goes negative; a biased one stays > 0
    values = []
    for s in range(20):
        a = torch.from_numpy(features(60, seed=100 + s))
        b = torch.from_numpy(features(60, seed=200 + s))
        values.append(compute_kid(a, b, seed=s, subsets=1, subset_size=60)[0])
    assert min(values) < 0 < max(values)
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values)) + 1e-9
    _, _, notes = compute_kid(torch.from_numpy(features(50)), torch.from_numpy(features(80, seed=3)), seed=0)
    assert "reduced from 1000 to 50" in notes[0]


def test_small_sets_warn_and_nan_is_refused():
    x = torch.from_numpy(features(100))
    value, notes = compute_fid(fid_statistics(x), fid_statistics(x + 0.1), 100, 100)
    assert np.isfinite(value) and "singular" in notes[0] and "KID" in notes[0]
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(KdganError, match="FID is not finite"):
        compute_fid(fid_statistics(bad), fid_statistics(x), 100, 100)


def test_precision_recall_on_separable_toy_features():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(300, 8))).float()
    same = torch.from_numpy(rng.normal(size=(300, 8))).float()
    far = same + 100.0
    p, r = compute_precision_recall(same, real)
    assert p > 0.8 and r > 0.8  # finite-sample k-NN balls (k = 3) miss a few points
    assert compute_precision_recall(far, real) == (0.0, 0.0)
    collapsed = real[:1] + 0.001 * torch.randn(300, 8)  # mode collapse onto one real sample
    p, r = compute_precision_recall(collapsed, real)
    assert p == 1.0 and r < 0.05  # every sample looks real, almost none of the data is covered


def test_inception_score_by_hand():
    assert compute_is(torch.zeros(100, 10), splits=10)[0] == pytest.approx(1.0)
    confident = torch.eye(10).repeat(10, 1) * 100  # certain and uniform over 10 classes
    assert compute_is(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-3)


@pytest.fixture(scope="module")
def inception():
    return load_inception("tf-torchscript", "cpu")


def test_features_do_not_depend_on_batch_size(inception):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    a = extract_features(images, inception, batch_size=3).pool3
    b = extract_features(images, inception, batch_size=10).pool3
    assert a.shape == (10, 2048)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    fa, _ = compute_fid(fid_statistics(a), fid_statistics(a[:5]), 10, 5)
    fb, _ = compute_fid(fid_statistics(b), fid_statistics(b[:5]), 10, 5)
    assert fa == pytest.approx(fb, rel=1e-4)


def test_reference_cache_is_reused_and_invalidated(tmp_path, monkeypatch, inception, image_folder):
    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    first = reference_features(str(image_folder), "train", inception)
    again = reference_features(str(image_folder), "train", inception)
    assert first.info["cache"] == "miss" and again.info["cache"] == "hit"
    assert torch.equal(first.pool3, again.pool3) and len(first) == 20
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image_folder / "cat" / "000.png")  # data changes
    changed = reference_features(str(image_folder), "train", inception)
    assert changed.info["cache"] == "miss"
    assert changed.info["content_sha256"] != first.info["content_sha256"]


def test_is_is_refused_without_logits_and_missing_split_is_refused(inception, image_folder, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    ref = reference_features(str(image_folder), "train", inception)
    rng = np.random.default_rng(1)
    proto = get_protocol("custom", num_gen=8)
    result = evaluate(lambda s: rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), ref, inception,
                      proto, ("fid", "is"), repeats=2)
    assert "is" not in result["metrics"] and "no logits" in result["unavailable"]["is"]
    assert len(result["metrics"]["fid"]["values"]) == 2 and result["generated"]["seeds"] == [0, 1]
    assert result["reference"]["num_images"] == 20 and result["resize"] == "tf1-bilinear-299"
    with pytest.raises(KdganError, match="compares with the 'test' split"):
        reference_features(str(image_folder), "test", inception)


def test_feature_set_stats_are_float64():
    fs = FeatureSet(torch.randn(50, 4))
    assert fs.stats["mu"].dtype == np.float64 and fs.stats["sigma"].shape == (4, 4)


def test_interrupted_feature_extraction_continues_from_its_partial_save(inception, tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    full = extract_features(images, inception, batch_size=2).pool3

    class Interrupted:
        device = inception.device

        def __init__(self):
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return inception(x)

    partial = tmp_path / "feats.partial.npz"
    with pytest.raises(KeyboardInterrupt):
        extract_features(images, Interrupted(), batch_size=2, partial=partial, save_every_s=0)
    with np.load(partial) as z:
        assert len(z["pool3"]) == 4 and int(z["num_total"]) == 6  # two batches were saved
    counting = Interrupted()
    counting.calls = -100  # never interrupts; counts the batches still to do
    resumed = extract_features(images, counting, batch_size=2, partial=partial).pool3
    assert counting.calls == -99  # only the last batch was computed
    torch.testing.assert_close(resumed, full)


def test_one_repeat_output_has_no_std_no_none_and_kid_scaled_the_same_everywhere(inception, tmp_path,
                                                                                  monkeypatch, caplog):
    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    flat = tmp_path / "flat"  # no split folders, like the built-in lfw-faces
    flat.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(flat / f"{i}.png")
    ref = reference_features(str(flat), "train", inception)
    assert ref.info["split"] == "all"
    caplog.set_level("INFO", logger="kdgan")
    result = evaluate(lambda s: rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), ref, inception,
                      get_protocol("custom", num_gen=5), ("fid", "kid"), repeats=1)
    table = format_table(result)
    kid_x1e3 = f"{result['metrics']['kid']['mean'] * 1e3:.4f}"
    assert "| metric | value | repeats |" in table and "+-" not in table
    subset_std = f"{result['metrics']['kid_subset_std']['mean'] * 1e3:.4f}"
    assert f"| kid x 1e3 | {kid_x1e3} (std over KID subsets {subset_std}) | 1 |" in table
    assert f"({flat}, all images, sha256" in table and "None" not in table
    repeat_line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("repeat 1/1"))
    assert f"kid x 1e3 {result['metrics']['kid']['mean'] * 1e3:.4g}," in repeat_line  # the table's scale
    assert "None" not in " ".join(r.getMessage() for r in caplog.records)


def test_offline_is_detected_before_any_download_and_said_once(tmp_path, monkeypatch, caplog, capfd):
    from kdgan.metrics import inception as inception_module

    assert not inception_module.reachable("https://kdgan-test.invalid/w.pth")  # RFC 2606: never resolves
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert inception_module.reachable(f"https://127.0.0.1:{server.getsockname()[1]}/w.pth")
    for var in ("https_proxy", "HTTPS_PROXY", "KDGAN_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no cached weights
    monkeypatch.setattr(inception_module, "URL_INCEPTION_V3", "https://kdgan-test.invalid/w.pth")
    caplog.set_level("INFO", logger="kdgan")
    extractor = load_inception("auto", "cpu")
    assert extractor.name == "kdgan-inception-v3-tf-torchscript"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("Inception: the TF Inception-v3 TorchScript")
    # the reason names the host the weights come from, not "offline" (PyPI may well be reachable)
    assert "kdgan-test.invalid, where they download from, cannot be reached" in lines[0]
    assert "Downloading" not in capfd.readouterr().err
    with pytest.raises(KdganError, match="cannot be reached from this machine; put weights-inception"):
        load_inception("torch-fidelity", "cpu")


def test_long_extractions_announce_their_duration(inception, monkeypatch, caplog):
    from kdgan.metrics import reference

    ticks = iter(range(0, 10_000, 100))
    monkeypatch.setattr(reference, "_clock", lambda: next(ticks))  # every image takes 100 s
    caplog.set_level("INFO", logger="kdgan")
    images = np.zeros((3, 32, 32, 3), np.uint8)
    extract_features(images, inception, batch_size=1, desc="generated features 1/1")
    assert "generated features 1/1: about 3 min for the remaining 2 images (0.0 images/s)" in caplog.text


def test_a_cpu_evaluates_at_most_1000_images_once_unless_asked():
    from kdgan.metrics.evaluate import CPU_NUM_GEN, fit_to_device, get_protocol

    cifar, fewshot = get_protocol("cifar"), get_protocol("fewshot")
    proto, repeats, line = fit_to_device(cifar, "cpu", None, None, full=False)
    assert (proto.num_gen, repeats) == (CPU_NUM_GEN, 1) == (1000, 1)
    assert "10000 x 3" in line and "--full" in line
    assert fit_to_device(cifar, "cpu", None, None, full=True)[:2] == (cifar, 3)  # --full: as published
    assert fit_to_device(cifar, "cuda", None, None, full=False)[:2] == (cifar, 3)  # a GPU: as published
    asked = get_protocol("fewshot", 5000)
    assert fit_to_device(asked, "cpu", 5000, 2, full=False) == (asked, 2, "")  # numbers asked: kept
    proto, repeats, line = fit_to_device(fewshot, "cpu", None, None, full=False)
    assert (proto.num_gen, repeats) == (1000, 1) and "5000 x 1" in line
    small = get_protocol("custom", 200)
    assert fit_to_device(small, "cpu", 200, None, full=False) == (small, 1, "")  # already small
