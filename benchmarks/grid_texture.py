"""How strong is the upsampling grid texture in a generator's images? A blockiness measure.

BigGAN's generator doubles its resolution three times with nearest-neighbour upsampling
(4 -> 8 -> 16 -> 32 px on the demo), each followed by 3x3 convolutions. What these fail to
smooth out is a texture locked to an 8 px lattice: the contrast between neighbouring pixels
depends on where the pair sits in its 2x2, 4x4 and 8x8 block (the "grid texture" of the
demo's samples). Natural images, and the reals resized to the same side, have no such lattice.

The index of a set of images: along each axis, the mean absolute difference between
neighbouring pixels (luminance, 0..255) at each of the 8 phases of the lattice (the pair
between pixels k and k+1, k mod 8), divided by its mean over the phases; the index is the
standard deviation of those 8 values (their coefficient of variation), averaged over the two
axes. 0 means the contrast does not depend on the lattice; 0.25 means it swings by about 25%
from phase to phase. It is a ratio, so it does not depend on the images' contrast. The
training reals give the baseline.

    python benchmarks/grid_texture.py --reals lfw-faces RUN/export [RUN2/export ...] [--num 1000]

prints one line per set: the index, its standard error over 5 disjoint subsets of the images
(the spread of the measure itself), and the 8 phase values of each axis.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def luminance(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 or float -> (N, H, W) float64 luminance (ITU-R BT.601 for RGB)."""
    x = images.astype(np.float64)
    if x.ndim == 3:
        return x
    if x.shape[-1] == 1:
        return x[..., 0]
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def phase_profile(images: np.ndarray, period: int = 8) -> np.ndarray:
    """(2, period): mean |neighbour difference| at each lattice phase, over the mean of the
    phases, for differences down the rows (axis 0 of the result) and along them (axis 1)."""
    y = luminance(images)
    if y.shape[1] < 2 * period or y.shape[2] < 2 * period:
        raise ValueError(f"images of at least {2 * period} px are needed, not {y.shape[1:]}")
    out = []
    for axis in (1, 2):
        d = np.abs(np.diff(y, axis=axis)).mean(axis=(0, 3 - axis))  # one value per pair position
        phases = np.array([d[k::period].mean() for k in range(period)])
        out.append(phases / phases.mean())
    return np.array(out)


def grid_index(images: np.ndarray, subsets: int = 5) -> tuple[float, float, np.ndarray]:
    """(index, its standard error over `subsets` disjoint subsets, the (2, 8) phase profile)."""
    profile = phase_profile(images)
    index = float(profile.std(axis=1).mean())
    parts = [float(phase_profile(p).std(axis=1).mean()) for p in np.array_split(images, subsets) if len(p)]
    se = float(np.std(parts, ddof=1) / math.sqrt(len(parts))) if len(parts) > 1 else float("nan")
    return index, se, profile


def generated(export: str, num: int, seed: int) -> np.ndarray:
    """`num` images (N, H, W, C) uint8 from an exported generator, with fixed latents."""
    from kdgan.data import to_uint8
    from kdgan.nets import load_generator

    G = load_generator(export, "cpu")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, G.z_dim, generator=g)
    labels = torch.arange(num) % max(G.c_dim, 1)
    chunks = []
    with torch.no_grad():
        for i in range(0, num, 100):
            chunks.append(to_uint8(G(z[i:i + 100], labels[i:i + 100] if G.c_dim else None)).numpy())
    return np.concatenate(chunks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exports", nargs="*", help="exported generators (RUN/export) to score")
    p.add_argument("--reals", default=None, help="the training data, scored as the baseline")
    p.add_argument("--num", type=int, default=1000, help="generated images per generator")
    p.add_argument("--seed", type=int, default=0, help="the latents' seed")
    p.add_argument("--resolution", type=int, default=None,
                   help="side of the reals when no generator is given (default: their own)")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = [(export, generated(export, args.num, args.seed)) for export in args.exports]
    if args.reals:
        from kdgan.data import load_images

        # at the generators' side, resized as training resizes them
        reals, _ = load_images(args.reals, resolution=rows[0][1].shape[1] if rows else args.resolution)
        rows.insert(0, (f"reals ({args.reals}, {len(reals)} images)", reals.images))
    if not rows:
        p.error("give --reals and/or exported generators")
    for name, images in rows:
        index, se, profile = grid_index(images)
        rows_, cols_ = (" ".join(f"{v:.2f}" for v in axis) for axis in profile)
        print(f"{index:.3f} +- {se:.3f}  {name}\n    down the rows: {rows_}\n    along the rows: {cols_}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
