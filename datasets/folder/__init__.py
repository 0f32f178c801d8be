"""Your own data, `build_dataset("folder", ...)`: a folder of images, a folder of masks, and an
optional declaration of what the masks mean (datasets/README.md walks through it).

- dataset.py: the `Folder` data set: layout, splits, palette, reading a sample;
- declaration.py: `dataset.json`, what mask values or colours mean;
- mask_files.py: mask files as stored (`read_mask_file`), their values and headers;
- mask_encoding.py: stored values or colours to class ids, lossy masks snapped;
- mask_scan.py: every mask's header read once when the data set is built;
- suggest.py: what to declare, from a survey of the masks (also tools/inspect_data.py).

Pairing images with masks by name patterns is datasets/pairing.py, which the benchmark
data sets (CamVid, ADE20K, Cityscapes) share.
"""
from .dataset import Folder, default_split, resize_nearest, select_split, split_names

__all__ = ["Folder", "default_split", "resize_nearest", "select_split", "split_names"]
