import pytest
import torch

from kdgan.augment import DiffAugment
from kdgan.augment.diffaugment import brightness, contrast, cutout, saturation, translation
from kdgan.errors import KdganError


def images(b=16, r=32):
    torch.manual_seed(0)
    return torch.rand(b, 3, r, r) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shape_dtype_and_gradients(policy):
    x = images().requires_grad_(True)
    y = DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_and_cutout_stay_in_range_and_only_move_or_zero_pixels():
    x = images()
    for op in (translation, cutout):
        y = op(x)
        assert y.min() >= -1 and y.max() <= 1
        # every output pixel is an input pixel of the same image and channel, or zero
        for b in range(4):
            values = set(x[b].flatten().tolist()) | {0.0}
            assert set(y[b].flatten().tolist()) <= values


def test_translation_shifts_by_at_most_one_eighth():
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    y = translation(x)
    pos = y.flatten(1).argmax(1)
    dy, dx = pos // 32 - 16, pos % 32 - 16
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    assert len(set(dx.tolist())) > 3  # really random per image


def test_cutout_zeroes_a_half_side_square_at_most():
    x = torch.ones(64, 3, 32, 32)
    zeroed = (cutout(x) == 0).all(1).flatten(1).sum(1)
    assert zeroed.max() == 16 * 16 and zeroed.min() >= 8 * 8  # clipped at the borders


def test_color_ops_match_their_definitions():
    torch.manual_seed(1)
    x = images(8)
    torch.manual_seed(5)
    y = brightness(x)
    shift = (y - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift)) and shift.abs().max() <= 0.5
    y = saturation(x)  # keeps the per-pixel channel mean
    assert torch.allclose(y.mean(1), x.mean(1), atol=1e-5)
    y = contrast(x)  # keeps the image mean
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)


def test_empty_policy_is_identity_and_unknown_op_is_refused():
    x = images()
    assert torch.equal(DiffAugment("")(x), x)
    with pytest.raises(KdganError, match="unknown DiffAugment op"):
        DiffAugment("translation,rotate")
