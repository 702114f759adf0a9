"""Data: DICOM discovery, index and loading; NIfTI/NRRD/MHA; datalists, splits, sampling, public-dataset
adapters and the demo data (a simulation built on the real MNI152 template)."""

from __future__ import annotations

from .adapters import MedMNISTDataset, load_csv_folder, load_medmnist, load_msd, medmnist_datalist, msd_properties
from .datalist import datalist_path, load_datalist
from .datalist_format import DatalistError, unlabeled_datalist, validate_datalist, write_datalist
from .demo import make_demo_data
from .dicom import QuarantineError, ScanStats, list_series, load_series, scan, summary_report
from .radiograph import read_radiograph
from .readers import image_record, read_image
from .sampling import ExtractSliced, RandSliced, make_dataset, patch_sampler
from .splits import domain_split, induce_imbalance, label_fractions, leave_one_out, patient_split

__all__ = [
    "scan",
    "load_series",
    "summary_report",
    "list_series",
    "ScanStats",
    "QuarantineError",
    "read_image",
    "image_record",
    "DatalistError",
    "load_datalist",
    "datalist_path",
    "write_datalist",
    "validate_datalist",
    "unlabeled_datalist",
    "patient_split",
    "label_fractions",
    "induce_imbalance",
    "domain_split",
    "leave_one_out",
    "make_dataset",
    "patch_sampler",
    "RandSliced",
    "ExtractSliced",
    "load_medmnist",
    "MedMNISTDataset",
    "medmnist_datalist",
    "load_msd",
    "msd_properties",
    "load_csv_folder",
    "make_demo_data",
    "read_radiograph",
]
