"""benchmarks/grid_texture.py: the blockiness index sees a nearest-upsampling lattice and nothing else."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "grid_texture.py"


def _module():
    spec = importlib.util.spec_from_file_location("grid_texture", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_index_separates_block_upsampled_images_from_smooth_ones():
    mod = _module()
    rng = np.random.default_rng(0)
    low = rng.normal(size=(200, 8, 8))
    blocky = low.repeat(4, axis=1).repeat(4, axis=2)  # 8 -> 32 px by nearest neighbour: a 4 px lattice
    x = np.arange(32)
    smooth = np.stack([np.outer(np.sin(x / 5 + a), np.cos(x / 7 + b)) for a, b in rng.normal(size=(200, 2))])
    noise = rng.normal(size=(200, 32, 32))
    to_img = lambda y: np.clip((y - y.min()) / (np.ptp(y) + 1e-9) * 255, 0, 255)[..., None].repeat(3, -1)
    index = {k: mod.grid_index(to_img(v))[0] for k, v in
             {"blocky": blocky, "smooth": smooth, "noise": noise}.items()}
    assert index["blocky"] > 0.5, index  # within-block differences are 0, across blocks large
    assert index["smooth"] < 0.1 and index["noise"] < 0.05, index
    profile = mod.phase_profile(to_img(blocky))
    assert profile.shape == (2, 8) and np.allclose(profile.mean(axis=1), 1.0)
    assert np.allclose(profile[:, [0, 1, 2, 4, 5, 6]], 0.0)  # only the pairs across a 4 px boundary differ
