"""MONAI model-zoo bundles as starting points (``monai-zoo:NAME``, pinned with ``@VERSION``): the encoders of the
zoo's segmentation networks, mapped into our backbones (the decoders are dropped and reported)."""

from __future__ import annotations

from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.source_record import WeightFile, WeightSource

__all__ = ["MONAI_ZOO"]

_LICENCE = "Apache-2.0 (Project-MONAI/model-zoo)"
_NOTE = (
    "Fetched with monai.bundle.download from the MONAI organisation on Hugging Face (latest version unless pinned: "
    "monai-zoo:NAME@VERSION); the bundle version read is recorded in the report's provenance. No SHA-256 is published."
)

MONAI_ZOO: tuple[WeightSource, ...] = (
    WeightSource(
        name="monai-zoo:wholeBody_ct_segmentation",
        adapter="monai",
        description="MONAI zoo wholeBody_ct_segmentation: SegResNet encoder trained to segment 104 structures in CT",
        files={
            "segresnet": WeightFile(
                "monai-zoo:wholeBody_ct_segmentation",
                backbone_kwargs={"init_filters": 32, "blocks_down": (1, 2, 2, 4)},
                spatial_dims=3,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="supervised segmentation (104 anatomical structures, SegResNet)",
            source_data="TotalSegmentator (1,204 CT volumes)",
            modality="CT",
            input_size=(96, 96, 96),
            spacing=(1.5, 1.5, 1.5),
            intensity_normalisation="z-score over non-zero voxels, then scaled to [-1, 1] (NormalizeIntensityd "
            "nonzero, ScaleIntensityd -1..1); RAS orientation",
            preprocessing={"intensity": {"name": "zscore", "nonzero": True}},
            licence=_LICENCE + "; TotalSegmentator data CC-BY-4.0",
            citation="Myronenko, 2018, arXiv:1810.11654; Wasserthal et al., 2023, arXiv:2208.05868",
        ),
        notes=_NOTE,
    ),
    WeightSource(
        name="monai-zoo:brats_mri_segmentation",
        adapter="monai",
        description="MONAI zoo brats_mri_segmentation: SegResNet encoder for 4-channel brain MR tumour segmentation",
        files={
            "segresnet": WeightFile(
                "monai-zoo:brats_mri_segmentation",
                backbone_kwargs={"init_filters": 16, "blocks_down": (1, 2, 2, 4)},
                spatial_dims=3,
                in_channels=4,
            )
        },
        provenance=Provenance(
            method="supervised segmentation (tumour core, whole tumour, enhancing tumour; SegResNet)",
            source_data="BraTS 2018 (285 multi-parametric MR studies: T1, T1c, T2, FLAIR)",
            modality="MR (4 channels)",
            input_size=(224, 224, 144),
            spacing=(1.0, 1.0, 1.0),
            intensity_normalisation="z-score per channel over non-zero voxels (NormalizeIntensityd nonzero, "
            "channel_wise)",
            preprocessing={"intensity": {"name": "zscore", "nonzero": True}},
            licence=_LICENCE + "; BraTS data terms apply",
            citation="Myronenko, 2018, arXiv:1810.11654",
        ),
        notes=_NOTE,
    ),
    WeightSource(
        name="monai-zoo:spleen_ct_segmentation",
        adapter="monai-unet",
        description="MONAI zoo spleen_ct_segmentation: UNet encoder (residual units) trained to segment the spleen in CT",
        files={
            "unet": WeightFile(
                "monai-zoo:spleen_ct_segmentation",
                backbone_kwargs={
                    "channels": (16, 32, 64, 128, 256),
                    "strides": (2, 2, 2, 2),
                    "num_res_units": 2,
                    "norm": "batch",
                },
                spatial_dims=3,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="supervised segmentation (spleen, UNet with residual units)",
            source_data="Medical Segmentation Decathlon Task09 Spleen (41 portal-venous CT volumes)",
            modality="CT",
            input_size=(96, 96, 96),
            spacing=(1.5, 1.5, 2.0),
            intensity_normalisation="HU clipped to [-57, 164] and scaled to [0, 1] (ScaleIntensityRanged); RAS",
            preprocessing={"intensity": {"name": "range", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0}},
            licence=_LICENCE + "; Medical Segmentation Decathlon data CC-BY-SA-4.0",
            citation="Kerfoot et al., 2018, arXiv:1811.09521; Antonelli et al., 2022, arXiv:2106.05735",
        ),
        notes=_NOTE,
    ),
    WeightSource(
        name="monai-zoo:swin_unetr_btcv_segmentation",
        adapter="swinunetr",
        description="MONAI zoo swin_unetr_btcv_segmentation: SwinUNETR encoder for 13-organ abdominal CT segmentation",
        files={
            "swin_unetr": WeightFile(
                "monai-zoo:swin_unetr_btcv_segmentation",
                backbone_kwargs={"feature_size": 48},
                spatial_dims=3,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="supervised segmentation (13 abdominal organs, SwinUNETR), from the self-supervised encoder",
            source_data="BTCV (30 abdominal CT volumes)",
            modality="CT",
            input_size=(96, 96, 96),
            spacing=(1.5, 1.5, 2.0),
            intensity_normalisation="HU clipped to [-175, 250] and scaled to [0, 1] (ScaleIntensityRanged)",
            preprocessing={"intensity": {"name": "range", "a_min": -175, "a_max": 250, "b_min": 0.0, "b_max": 1.0}},
            licence=_LICENCE + "; BTCV (Synapse) data terms apply",
            citation="Hatamizadeh et al., 2022, arXiv:2201.01266; Tang et al., 2022, arXiv:2111.14791",
        ),
        notes=_NOTE,
    ),
)
