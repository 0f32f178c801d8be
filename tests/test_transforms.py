import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from models.input_norm import IMAGENET
from utils.transforms import RandomScale, ResizeShorterSide, eval_transforms, train_transforms


def _pair(height=48, width=40, block=8, seed=0):
    """A blocky mask and an image whose red channel encodes it (value 40 * class + 20)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 5, (height // block + 1, width // block + 1), generator=g)
    mask = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[0] = (mask * 40 + 20).to(torch.uint8)
    image[1] = 128
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def _mask_from_image(image):
    return ((image[0].float() - 20) / 40).round().long()


def _interior(mask):
    """Pixels whose 3 x 3 neighbourhood holds one class: resampling cannot blend them."""
    m = mask[None, None].float()
    return (torch.nn.functional.max_pool2d(m, 3, 1, 1) == -torch.nn.functional.max_pool2d(-m, 3, 1, 1))[0, 0]


@pytest.mark.parametrize("transform", [
    v2.RandomHorizontalFlip(p=1.0),
    v2.RandomCrop(24),
    v2.RandomCrop(64, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}),
])
def test_geometric_transforms_keep_pixels_aligned_exactly(transform):
    for seed in range(3):
        image, mask = _pair(seed=seed)
        torch.manual_seed(seed)
        image_t, mask_t = transform(image, mask)
        valid = mask_t != 255
        assert torch.equal(_mask_from_image(image_t)[valid], mask_t[valid])


@pytest.mark.parametrize("transform", [RandomScale(0.5, 2.0), ResizeShorterSide(30)])
def test_resampling_transforms_keep_masks_aligned(transform):
    for seed in range(3):
        image, mask = _pair(seed=seed)
        torch.manual_seed(seed)
        image_t, mask_t = transform(image, mask)
        assert image_t.shape[-2:] == mask_t.shape[-2:]
        assert mask_t.dtype == torch.int64
        assert set(mask_t.unique().tolist()) <= set(mask.unique().tolist())  # nearest: no new ids
        inside = _interior(mask_t)
        assert inside.float().mean() > 0.5
        assert torch.equal(_mask_from_image(image_t)[inside], mask_t[inside])


def test_training_crops_always_have_the_configured_size_and_pad_masks_with_ignore():
    transform = train_transforms(crop_size=96, scale_range=(0.5, 1.0))
    for seed in range(5):
        image, mask = _pair(block=12, seed=seed)
        torch.manual_seed(seed)
        image_t, mask_t = transform(image, mask)
        assert image_t.shape == (3, 96, 96) and mask_t.shape == (96, 96)
        assert image_t.dtype == torch.float32 and mask_t.dtype == torch.int64
        padded = mask_t == 255
        assert padded.any()  # the image is at most 48 x 40: most of the crop is padding
        # padded with the mean colour, which normalises to zero as the sliding window pads at test time
        assert image_t[:, padded].abs().max() < 0.01
        inside = _interior(mask_t) & ~padded
        assert inside.any()
        recovered = _mask_from_image(IMAGENET.denormalize(image_t))
        assert torch.equal(recovered[inside], mask_t[inside])


def test_eval_transforms_normalise_images_and_leave_masks_untouched():
    image, mask = _pair()
    image_t, mask_t = eval_transforms()(image, mask)
    assert torch.equal(mask_t, mask)
    expected = (image.float() / 255 - torch.tensor(IMAGENET.mean).view(3, 1, 1)) / torch.tensor(IMAGENET.std).view(3, 1, 1)
    assert torch.allclose(image_t, expected, atol=1e-6)


def test_random_scale_rejects_bad_ranges():
    with pytest.raises(ValueError):
        RandomScale(0, 1)
    with pytest.raises(ValueError):
        RandomScale(2, 1)
