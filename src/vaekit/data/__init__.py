"""Image datasets for vaekit, loaded by name into memory as uint8 (N, C, H, W).

    ds = load_dataset("fashion-mnist", "train")
    x = ds.batch(torch.arange(64))        # float32 in [0, 1]

Datasets are entries in a registry; importing the modules below registers
fashion-mnist, mnist and idx (idx.py), digits (digits.py), image-folder
(image_folder.py) and dsprites (dsprites.py, generated, rendered per batch).
A new dataset is one more module that calls `register`.
"""

from vaekit.data.dataset import (
    DatasetSpec,
    ImageDataset,
    clear_cache,
    dataset_names,
    describe_datasets,
    fixed_sample,
    load_dataset,
    register,
)
from vaekit.data import digits, dsprites, idx, image_folder  # noqa: F401  (registers the datasets)
from vaekit.data import svhn  # noqa: F401  (registers svhn)
from vaekit.data.dsprites import DSpritesDataset

__all__ = [
    "DSpritesDataset",
    "DatasetSpec",
    "ImageDataset",
    "clear_cache",
    "dataset_names",
    "describe_datasets",
    "fixed_sample",
    "load_dataset",
    "register",
]
