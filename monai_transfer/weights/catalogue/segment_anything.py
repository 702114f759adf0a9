"""Segment Anything's ViT-B image encoder (SAM, natural images) and MedSAM's (SAM fine-tuned on medical images)."""

from __future__ import annotations

from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.source_record import WeightFile, WeightSource

__all__ = ["SEGMENT_ANYTHING"]

_MEDSAM_PAGE = "https://github.com/bowang-lab/MedSAM"  # its README links medsam_vit_b.pth (a Google Drive file)
_NOTE = "The absolute and relative position embeddings (1024 px) are resampled to the backbone's img_size on load."

SEGMENT_ANYTHING: tuple[WeightSource, ...] = (
    WeightSource(
        name="sam-vit-b-sa1b",
        adapter="sam-image-encoder",
        description="Segment Anything ViT-B image encoder, promptable segmentation on SA-1B",
        files={"sam_vit_b": WeightFile("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth")},
        provenance=Provenance(
            method="promptable segmentation (MAE-initialised ViT-B image encoder, trained with the SAM data engine)",
            source_data="SA-1B (11M natural images, 1.1B masks)",
            modality="natural images (RGB)",
            input_size=(1024, 1024),
            intensity_normalisation="ImageNet mean/std on [0, 255] (Sam.preprocess), longest side resized to 1024",
            preprocessing={
                "intensity": {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
            },
            licence="Apache-2.0 (facebookresearch/segment-anything); the SA-1B images are under their research licence",
            citation="Kirillov et al., 2023, arXiv:2304.02643",
            notes=_NOTE + " Only the image encoder loads; the prompt encoder and mask decoder are dropped.",
        ),
        notes="The file name carries a 6-digit hash prefix, too short to check (8 are needed): the digest of the "
        "download is logged and recorded.",
    ),
    WeightSource(
        name="medsam-vit-b",
        adapter="sam-image-encoder",
        description="MedSAM ViT-B image encoder: SAM fine-tuned on 1.57M medical image-mask pairs",
        files={"sam_vit_b": WeightFile(_MEDSAM_PAGE, filename="medsam_vit_b.pth", request_url=_MEDSAM_PAGE)},
        provenance=Provenance(
            method="promptable segmentation (SAM ViT-B fine-tuned with box prompts)",
            source_data="1,570,263 medical image-mask pairs, 10 imaging modalities, over 30 cancer types",
            modality="CT, MR, X-ray, ultrasound, mammography, OCT, endoscopy, fundus, dermoscopy, pathology",
            input_size=(1024, 1024),
            intensity_normalisation="per image min-max to [0, 1] (after a CT window or 0.5-99.5 percentile clip), "
            "three equal channels, 1024x1024",
            preprocessing={"intensity": {"name": "minmax", "minv": 0.0, "maxv": 1.0}},
            licence="Apache-2.0 (bowang-lab/MedSAM); the training datasets keep their own licences",
            citation="Ma et al., 2024, Nature Communications 15:654, arXiv:2304.12306",
            notes=_NOTE,
        ),
        notes="Published as a Google Drive file linked from the MedSAM README: download medsam_vit_b.pth once and put "
        "it at the cache path the error names (or pass its path). No SHA-256 is published.",
    ),
)
