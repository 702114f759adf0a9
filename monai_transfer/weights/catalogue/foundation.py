"""Foundation models and large supervised medical starts: DINOv2, BiomedCLIP, CT-FM, RadImageNet, Models Genesis."""

from __future__ import annotations

from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.source_record import WeightFile, WeightSource

__all__ = ["FOUNDATION"]

_HF = "https://huggingface.co/{repo}/resolve/main/{file}"
_CLIP_MEAN, _CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
_IMAGENET = {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# publishers that hand their files out by hand: the address is the page, the file never downloads by URL
_RADIMAGENET = "https://drive.google.com/drive/folders/1Es7cK1hv7zNHJoUW0tI0e6nLFVYTqPqK"
_GENESIS_FORM = "https://www.wjx.top/jq/46747127.aspx"


def _dinov2(size: str) -> WeightFile:
    name = f"vit_{size}_patch14_dinov2.lvd142m"
    return WeightFile(_HF.format(repo=f"timm/{name}", file="model.safetensors"), filename=f"{name}.safetensors")


FOUNDATION: tuple[WeightSource, ...] = (
    WeightSource(
        name="dinov2-lvd142m",
        adapter="timm-vit",
        description="DINOv2 ViT-S/14 and ViT-B/14 (self-distillation on LVD-142M), timm's conversion",
        files={"vit_small_patch14": _dinov2("small"), "vit_base_patch14": _dinov2("base")},
        provenance=Provenance(
            method="self-supervised: DINO + iBOT self-distillation with KoLeo regularisation (DINOv2)",
            source_data="LVD-142M (142M curated natural images)",
            modality="natural images (RGB)",
            input_size=(518, 518),
            intensity_normalisation="ImageNet mean/std, RGB",
            preprocessing={"intensity": _IMAGENET},
            licence="Apache-2.0 (facebookresearch/dinov2 weights, timm model card)",
            citation="Oquab et al., 2024, arXiv:2304.07193",
            notes="Published at 518x518 (37x37 patches); position embeddings are resampled to the backbone's "
            "img_size on load. LayerScale is folded into the preceding linear layers (exact).",
        ),
        notes="timm's Hugging Face files publish no SHA-256: the digest of the download is logged and recorded.",
    ),
    WeightSource(
        name="biomedclip-pmc15m",
        adapter="open-clip-timm-vit",
        description="BiomedCLIP image tower: ViT-B/16 trained contrastively on PMC-15M figure-caption pairs",
        files={
            "vit_base_patch16": WeightFile(
                _HF.format(
                    repo="microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", file="open_clip_pytorch_model.bin"
                ),
                filename="BiomedCLIP-PubMedBERT_256-vit_base_patch16_224.bin",
            )
        },
        provenance=Provenance(
            method="contrastive image-text pretraining (CLIP) with a PubMedBERT text encoder",
            source_data="PMC-15M (15M figure-caption pairs from PubMed Central articles)",
            modality="biomedical figures (radiology, microscopy, photographs, charts), RGB",
            input_size=(224, 224),
            intensity_normalisation="OpenAI CLIP mean/std, RGB",
            preprocessing={"intensity": {"name": "imagenet", "mean": _CLIP_MEAN, "std": _CLIP_STD}},
            licence="MIT (microsoft/BiomedCLIP model card; research use, see its intended-use section)",
            citation="Zhang et al., 2023, arXiv:2303.00915",
            notes="Only the vision trunk loads; the text tower and the image projection are dropped.",
        ),
        notes="The open_clip file (a torch.save state dict) publishes no SHA-256: the digest is logged and recorded.",
    ),
    WeightSource(
        name="ct-fm",
        adapter="monai",
        description="CT-FM SegResNetDS encoder, self-supervised on 148,000 CT scans (project-lighter)",
        files={
            "segresnet_ds": WeightFile(
                _HF.format(repo="project-lighter/ct_fm_feature_extractor", file="model.safetensors"),
                filename="ct_fm_feature_extractor.safetensors",
                backbone_kwargs={"init_filters": 32, "blocks_down": (1, 2, 2, 4, 4)},
                spatial_dims=3,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="self-supervised: intra-sample contrastive learning (SimCLR-style) on 3D patches",
            source_data="148,000 CT scans from the NCI Imaging Data Commons",
            modality="CT",
            intensity_normalisation="HU clipped to [-1024, 2048] and scaled to [0, 1]; orientation SPL",
            preprocessing={"intensity": {"name": "range", "a_min": -1024, "a_max": 2048, "b_min": 0.0, "b_max": 1.0}},
            licence="see model card (https://huggingface.co/project-lighter/ct_fm_feature_extractor; not recorded "
            "here); the IDC collections keep their own licences",
            citation="Pai et al., 2025, arXiv:2501.09001",
            notes="MONAI SegResEncoder(init_filters=32, blocks_down=(1, 2, 2, 4, 4), batch norm); the safetensors "
            "file holds its keys unprefixed.",
        ),
        notes="The Hugging Face file publishes no SHA-256: the digest of the download is logged and recorded.",
    ),
    WeightSource(
        name="radimagenet",
        adapter="radimagenet",
        description="RadImageNet ResNet-50 and DenseNet-121: supervised on 1.35M CT, MR and ultrasound images",
        files={
            "resnet50": WeightFile(_RADIMAGENET, filename="RadImageNet_ResNet50.pt", request_url=_RADIMAGENET),
            "densenet121": WeightFile(_RADIMAGENET, filename="RadImageNet_DenseNet121.pt", request_url=_RADIMAGENET),
        },
        provenance=Provenance(
            method="supervised classification (165 pathology labels)",
            source_data="RadImageNet: 1.35M radiologic images (CT, MR, ultrasound; 11 anatomies, 165 labels)",
            modality="CT, MR, ultrasound (2D slices)",
            input_size=(224, 224),
            intensity_normalisation="(x - 127.5) * 2 / 255, i.e. [0, 255] to [-1, 1], three equal channels",
            preprocessing={"intensity": {"name": "imagenet", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
            licence="MIT (BMEII-AI/RadImageNet repository); the RadImageNet images are available on request",
            citation="Mei et al., 2022, Radiology: Artificial Intelligence 4(5):e210315",
            notes="The PyTorch files are torchvision networks saved as nn.Sequential(children) under 'backbone.'.",
        ),
        notes="Published in a Google Drive folder (RadImageNet_pytorch.zip), which does not download by URL: fetch "
        "it once, unzip it, and put ResNet50.pt / DenseNet121.pt at the cache path the error names (or pass the "
        "path). No SHA-256 is published.",
    ),
    WeightSource(
        name="models-genesis-chest-ct",
        adapter="models-genesis",
        description="Models Genesis Chest CT: 3D U-Net self-supervised by image restoration on LUNA16 CT",
        files={
            "genesis_unet3d": WeightFile(
                _GENESIS_FORM, filename="Genesis_Chest_CT.pt", spatial_dims=3, in_channels=1, request_url=_GENESIS_FORM
            )
        },
        provenance=Provenance(
            method="self-supervised: restoration of non-linearly, locally shuffled, in- and out-painted sub-volumes",
            source_data="LUNA16 chest CT (623 scans), 64x64x32 cubes",
            modality="CT",
            input_size=(64, 64, 32),
            intensity_normalisation="HU clipped to [-1000, 1000] and scaled to [0, 1]",
            preprocessing={"intensity": {"name": "range", "a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0}},
            licence="MIT (MrGiovanni/ModelsGenesis); LUNA16 terms apply to the data",
            citation="Zhou et al., 2019, MICCAI, arXiv:1908.06912; Zhou et al., 2021, MedIA 67:101840",
            notes="The original normalises with batch statistics in eval mode (ContBatchNorm3d); this encoder uses "
            "the running statistics.",
        ),
        notes="Handed out after a request form: put Genesis_Chest_CT.pt at the cache path the error names, or pass "
        "its path. No SHA-256 is published.",
    ),
)
