"""Public-dataset adapters returning MONAI-style datalists: MedMNIST ``.npz``, MSD ``dataset.json``, folder + CSV."""

from __future__ import annotations

from .csv_folder import load_csv_folder
from .medmnist import (
    MEDMNIST_INFO,
    MEDMNIST_LABELS,
    MedMNISTDataset,
    download_medmnist,
    load_medmnist,
    medmnist_datalist,
    medmnist_url,
)
from .msd import load_msd, msd_properties

__all__ = [
    "load_medmnist",
    "MedMNISTDataset",
    "medmnist_datalist",
    "MEDMNIST_LABELS",
    "download_medmnist",
    "medmnist_url",
    "MEDMNIST_INFO",
    "load_msd",
    "msd_properties",
    "load_csv_folder",
]
