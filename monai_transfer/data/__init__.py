"""Data: DICOM series discovery/validation/index/loading and NIfTI/NRRD/MHA reading with the same record."""

from __future__ import annotations

from .dicom import QuarantineError, ScanStats, list_series, load_series, scan, summary_report
from .readers import image_record, read_image

__all__ = [
    "scan",
    "load_series",
    "summary_report",
    "list_series",
    "ScanStats",
    "QuarantineError",
    "read_image",
    "image_record",
]

# datalists, splits, sampling, adapters, demo data (monai_transfer.data.{datalist,splits,sampling,adapters,demo})
from .adapters import MedMNISTDataset, load_csv_folder, load_medmnist, load_msd, msd_properties  # noqa: E402
from .datalist import DatalistError, load_datalist, unlabeled_datalist, validate_datalist, write_datalist  # noqa: E402
from .demo import make_demo_data  # noqa: E402
from .radiograph import read_radiograph  # noqa: E402
from .sampling import ExtractSliced, RandSliced, make_dataset, patch_sampler  # noqa: E402
from .splits import domain_split, induce_imbalance, label_fractions, leave_one_out, patient_split  # noqa: E402

__all__ += [
    "DatalistError",
    "load_datalist",
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
    "load_msd",
    "msd_properties",
    "load_csv_folder",
    "make_demo_data",
    "read_radiograph",
]
