"""The records a weight source keeps: ``WeightFile`` (one published file, for one backbone) and ``WeightSource`` (a
named family of files with their provenance).

Apart from the registry (:mod:`monai_transfer.weights.sources`) so that the catalogue
(:mod:`monai_transfer.weights.catalogue`) and the registry both import them and neither imports the other at import
time (the backbones' ``backbone_config`` pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monai_transfer.weights.provenance import Provenance

__all__ = ["WeightFile", "WeightSource"]


@dataclass(frozen=True)
class WeightFile:
    """One published file of a source, for one backbone.

    Attributes:
        url: download address.
        sha256: full hex digest or a prefix of at least 8 hex digits; ``None`` when none is published.
        backbone_kwargs: keyword arguments ``create_backbone`` must pass to the factory for the keys to fit.
        spatial_dims: the dimensionality of the published weights (2D weights inflate into 3D backbones).
        in_channels: input channels of the published weights (adapted automatically when they differ).
        filename: cache file name (default: the URL's last path component).
        provenance: overrides of the source's provenance for this file (input size, URL...).
        adapter: overrides the source's adapter for this file (a DenseNet file in a mostly-ResNet source).
        request_url: for files the publisher hands out only through a form: the page to request it from. Such a
            file is never downloaded: it is read from the cache path, and its absence is explained.
        safe_globals: the harmless classes (by qualified name, from ``fetch.SAFE_GLOBALS``) the published file
            pickles beside its tensors (PyContrast's ``argparse.Namespace``), allowed when reading this file only.
    """

    url: str
    sha256: str | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    spatial_dims: int = 2
    in_channels: int = 3
    filename: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None
    request_url: str = ""
    safe_globals: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightSource:
    """A named family of published weights.

    Attributes:
        name: registry name, e.g. ``"medicalnet-23datasets"``.
        adapter: the checkpoint adapter that reads its files (``monai_transfer.weights.adapters``).
        files: backbone registry name -> ``WeightFile``.
        provenance: what is common to all files (method, data, modality, normalisation, licence, citation).
        description: one line for users.
        notes: caveats (e.g. a file format the loader refuses).
    """

    name: str
    adapter: str
    files: dict[str, WeightFile]
    provenance: Provenance
    description: str = ""
    notes: str = ""

    def adapter_for(self, backbone_name: str) -> str:
        """The adapter that reads the file for ``backbone_name``."""
        return self.files[backbone_name].adapter or self.adapter

    def provenance_for(self, backbone_name: str) -> Provenance:
        """The provenance record of the file for ``backbone_name``, with URL, hash and shape facts filled in."""
        f = self.files[backbone_name]
        return self.provenance.update(
            url=f.url,
            sha256=f.sha256 or "",
            backbone_name=backbone_name,
            spatial_dims=f.spatial_dims,
            in_channels=f.in_channels,
            **f.provenance,
        )
