"""MONAI bundles: config templates, the writer (any starting point or run -> bundle), loading a bundle's network,
and the linter (``bundle check``)."""

from __future__ import annotations

from monai_transfer.bundle.check import BundleProblem, check_bundle
from monai_transfer.bundle.from_run import NoImagesError, bundle_from_run, infer, run_inference, skipped_images
from monai_transfer.bundle.load import load_bundle_network
from monai_transfer.bundle.writer import BundleExistsError, create_bundle

__all__ = [
    "create_bundle",
    "check_bundle",
    "BundleProblem",
    "BundleExistsError",
    "load_bundle_network",
    "bundle_from_run",
    "run_inference",
    "infer",
    "skipped_images",
    "NoImagesError",
]
