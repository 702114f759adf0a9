"""The catalogue of published starting points beyond the first few sources (``monai_transfer.weights.sources``): one
file per family, each a tuple of ``WeightSource`` records (data, licence, publisher's URL, hash where published, the
preprocessing contract, the backbones and dimensionalities each file fits). Registered on the first source lookup."""

from __future__ import annotations

from monai_transfer.weights.catalogue.foundation import FOUNDATION
from monai_transfer.weights.catalogue.monai_zoo import MONAI_ZOO
from monai_transfer.weights.catalogue.segment_anything import SEGMENT_ANYTHING
from monai_transfer.weights.catalogue.ssl_imagenet import SSL_IMAGENET

__all__ = ["CATALOGUE", "FOUNDATION", "MONAI_ZOO", "SEGMENT_ANYTHING", "SSL_IMAGENET"]

CATALOGUE = FOUNDATION + SEGMENT_ANYTHING + MONAI_ZOO + SSL_IMAGENET
