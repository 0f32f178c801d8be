"""The U-Net paper's elastic deformation as a joint transform."""
import numpy as np
import torch
from scipy import ndimage
from torchvision import tv_tensors

from utils.transforms import ElasticDeform, train_transforms, warp


def blobs(height=64, width=80, seed=0) -> torch.Tensor:
    """A label image of three classes in smooth blobs, plus an ignore region."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(height, width)), 8)
    labels = np.digitize(noise, np.quantile(noise, [0.35, 0.7])).astype(np.int64)
    labels[:5, :7] = 255
    return torch.from_numpy(labels)


def test_zero_field_changes_nothing():
    mask = tv_tensors.Mask(blobs())
    image = tv_tensors.Image(torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8))
    out_image, out_mask = ElasticDeform(std=0)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)
    # the sampling itself is exact for a zero field (uint8 images are rounded back)
    zero = torch.zeros(2, 64, 80, dtype=torch.float64)
    assert torch.equal(warp(image.as_subclass(torch.Tensor), zero), image.as_subclass(torch.Tensor))
    assert torch.equal(warp(mask.as_subclass(torch.Tensor), zero, nearest=True), mask.as_subclass(torch.Tensor))


def test_image_and_mask_stay_aligned():
    labels = blobs()
    colours = torch.tensor([[30, 200, 90], [120, 10, 240], [250, 160, 0]], dtype=torch.uint8)
    lut = torch.zeros(256, 3, dtype=torch.uint8)
    lut[:3] = colours
    image = tv_tensors.Image(lut[labels].permute(2, 0, 1).contiguous())  # the image is drawn from the mask
    mask = tv_tensors.Mask(labels)
    torch.manual_seed(3)
    out_image, out_mask = ElasticDeform(std=10, grid=3)(image, mask)
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
    assert out_mask.dtype == torch.int64 and out_image.dtype == torch.uint8
    assert set(out_mask.unique().tolist()) <= {0, 1, 2, 255}  # nearest neighbour: no new ids
    assert not torch.equal(out_mask, mask)  # it did deform
    # read the classes back from the warped image's colours
    distance = (out_image.permute(1, 2, 0)[:, :, None, :].int() - colours.int()).abs().sum(-1)
    derived = distance.argmin(-1)
    exact = distance.min(-1).values == 0
    # away from class boundaries (the 5 x 5 neighbourhood of the warped mask is uniform)
    out = out_mask.as_subclass(torch.Tensor).numpy()
    uniform = (ndimage.maximum_filter(out, 5) == ndimage.minimum_filter(out, 5)) & (out != 255)
    assert uniform.sum() > 0.3 * out.size
    assert exact.numpy()[uniform].all()
    assert np.array_equal(derived.numpy()[uniform], out[uniform])


def test_in_the_training_pipeline():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8))
    mask = tv_tensors.Mask(blobs(50, 60))
    steps = train_transforms(32, (1.0, 1.0), hflip=False, elastic_std=10)
    assert any(isinstance(t, ElasticDeform) for t in steps.transforms)
    out_image, out_mask = steps(image, mask)
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    assert set(out_mask.unique().tolist()) <= {0, 1, 2, 255}
