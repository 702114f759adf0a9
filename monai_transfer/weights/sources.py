"""Known published weights, as data.

A *source* is a named family of published files (``"torchvision-imagenet1k-v1"``), with one file per backbone it
fits (``resnet18``, ``resnet34``, ``densenet121``). Each file records its URL, its SHA-256 (the full digest or the
prefix the publisher gives; ``None`` where the publisher gives none), the adapter that reads it, the keyword
arguments the backbone must be built with (MedicalNet's ResNet-18/34 need ``shortcut_type="A"``), and a
``Provenance`` record.

>>> from monai_transfer.weights import list_sources, source_backbone_kwargs
>>> list_sources("resnet18")
['medicalnet-23datasets', 'torchvision-imagenet1k-v1']
>>> source_backbone_kwargs("medicalnet-23datasets", "resnet18")
{'shortcut_type': 'A'}

Nothing here downloads at import time; ``load_pretrained(module, "<source name>")`` downloads on first use into
a cache folder (``torch.hub.get_dir()/monai_transfer`` unless ``cache_dir=`` is given).

The first sources are defined below; the catalogue of foundation models, model-zoo bundles and self-supervised
ImageNet ResNet-50s lives in ``monai_transfer.weights.catalogue`` (one file per family), registered on first lookup.
A model-zoo source may be pinned to a bundle version: ``"monai-zoo:brats_mri_segmentation@0.5.4"``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monai_transfer.utils.registry import Registry
from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.source_record import WeightFile, WeightSource

__all__ = [
    "WeightFile",
    "WeightSource",
    "register_source",
    "get_source",
    "list_sources",
    "resolve_source",
    "source_backbone_kwargs",
    "is_source_name",
]


_IMAGENET_NORM = "ImageNet mean/std: (x/255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225), RGB"
_TV = "https://download.pytorch.org/models/"
_TV_LICENCE = "BSD-3-Clause (torchvision); ImageNet terms of access apply to the training data"
_HF_MEDICALNET = "https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet{d}/resolve/main/resnet_{d}_23dataset.pth"
_HF_TIMM = "https://huggingface.co/timm/{name}/resolve/main/model.safetensors"


def _medicalnet_file(depth: int) -> WeightFile:
    shortcut = "A" if depth in (18, 34) else "B"
    kwargs: dict[str, Any] = {"shortcut_type": shortcut}
    if shortcut == "B":
        kwargs["bias_downsample"] = False
    return WeightFile(
        url=_HF_MEDICALNET.format(d=depth),
        sha256=None,
        backbone_kwargs=kwargs,
        spatial_dims=3,
        in_channels=1,
    )


_BUILTIN: tuple[WeightSource, ...] = (
    WeightSource(
        name="torchvision-imagenet1k-v1",
        adapter="torchvision-resnet",
        description="torchvision's original ImageNet-1k weights (IMAGENET1K_V1)",
        files={
            "resnet18": WeightFile(_TV + "resnet18-f37072fd.pth", "f37072fd"),
            "resnet34": WeightFile(_TV + "resnet34-b627a593.pth", "b627a593"),
            "resnet50": WeightFile(_TV + "resnet50-0676ba61.pth", "0676ba61"),
            "densenet121": WeightFile(_TV + "densenet121-a639ec97.pth", "a639ec97", adapter="torchvision-densenet"),
        },
        provenance=Provenance(
            method="supervised classification",
            source_data="ImageNet-1k (1.28M natural images, 1000 classes)",
            modality="natural images (RGB)",
            input_size=(224, 224),
            intensity_normalisation=_IMAGENET_NORM,
            preprocessing={
                "intensity": {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
            },
            licence=_TV_LICENCE,
            citation="He et al., 2016, arXiv:1512.03385; Huang et al., 2017, arXiv:1608.06993",
        ),
    ),
    WeightSource(
        name="torchvision-imagenet1k-v2",
        adapter="torchvision-resnet",
        description="torchvision's improved-recipe ImageNet-1k weights (IMAGENET1K_V2)",
        files={"resnet50": WeightFile(_TV + "resnet50-11ad3fa6.pth", "11ad3fa6")},
        provenance=Provenance(
            method="supervised classification (torchvision 'new training recipe')",
            source_data="ImageNet-1k",
            modality="natural images (RGB)",
            input_size=(224, 224),
            intensity_normalisation=_IMAGENET_NORM,
            preprocessing={
                "intensity": {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
            },
            licence=_TV_LICENCE,
            citation="He et al., 2016, arXiv:1512.03385; Vryniotis, 2021, 'How to train state-of-the-art models "
            "using TorchVision's latest primitives'",
        ),
    ),
    WeightSource(
        name="medicalnet-23datasets",
        adapter="medicalnet",
        description="MedicalNet (Med3D) 3D ResNets pretrained by segmentation on 23 public CT/MR datasets",
        files={f"resnet{d}": _medicalnet_file(d) for d in (10, 18, 34, 50)},
        provenance=Provenance(
            method="supervised multi-domain segmentation (Med3D, shared encoder, dataset-specific decoders)",
            source_data="23 public 3D CT and MR segmentation datasets (the 3DSeg-8 collection extended)",
            modality="CT and MR",
            intensity_normalisation="per-volume z-score over voxels > 0 (MedicalNet itensity_normalize_one_volume)",
            preprocessing={"intensity": {"name": "zscore", "nonzero": True}},
            licence="MIT (Tencent/MedicalNet); the training datasets keep their own licences",
            citation="Chen, Ma & Zheng, 2019, arXiv:1904.00625",
            notes="3D only, one input channel. ResNet-18/34 use shortcut type A (no downsample parameters).",
        ),
        notes="No SHA-256 is published: the digest of the downloaded file is logged and recorded in the report.",
    ),
    WeightSource(
        name="timm-augreg-in21k-ft-in1k",
        adapter="timm-vit",
        description="timm AugReg ViTs: ImageNet-21k pretraining, ImageNet-1k fine-tuning, 224x224",
        files={
            "vit_small_patch16": WeightFile(
                _HF_TIMM.format(name="vit_small_patch16_224.augreg_in21k_ft_in1k"),
                filename="vit_small_patch16_224.augreg_in21k_ft_in1k.safetensors",
            ),
            "vit_base_patch16": WeightFile(
                _HF_TIMM.format(name="vit_base_patch16_224.augreg_in21k_ft_in1k"),
                filename="vit_base_patch16_224.augreg_in21k_ft_in1k.safetensors",
            ),
        },
        provenance=Provenance(
            method="supervised classification with AugReg (ImageNet-21k, then fine-tuned on ImageNet-1k)",
            source_data="ImageNet-21k, ImageNet-1k",
            modality="natural images (RGB)",
            input_size=(224, 224),
            intensity_normalisation="(x/255 - 0.5) / 0.5 per channel (timm IMAGENET_INCEPTION_MEAN/STD), RGB",
            preprocessing={"intensity": {"name": "imagenet", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
            licence="Apache-2.0 (timm model card); ImageNet terms of access apply to the training data",
            citation="Steiner et al., 2022, arXiv:2106.10270; Dosovitskiy et al., 2021, arXiv:2010.11929",
        ),
        notes="Position embeddings are resampled when img_size differs from 224 and inflated for 3D.",
    ),
    WeightSource(
        name="swinunetr-ssl-5050ct",
        adapter="swinunetr",
        description="SwinUNETR encoder self-supervised on 5,050 public CT volumes (Tang et al., 2022)",
        files={
            "swin_unetr": WeightFile(
                "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/model_swinvit.pt",
                sha256=None,
                backbone_kwargs={"feature_size": 48},
                spatial_dims=3,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="self-supervised: masked volume inpainting + 3D rotation prediction + contrastive coding",
            source_data="5,050 CT volumes (BTCV, LiDC, HNSCC, TCIA Colon, TCIA COVID-19, LUNA16)",
            modality="CT",
            input_size=(96, 96, 96),
            spacing=(1.5, 1.5, 2.0),
            intensity_normalisation="HU clipped to [-1000, 1000] and scaled to [0, 1] (ScaleIntensityRanged)",
            preprocessing={"intensity": {"name": "range", "a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0}},
            licence="Apache-2.0 (Project-MONAI research-contributions); the CT datasets keep their own licences",
            citation="Tang et al., 2022, arXiv:2111.14791; Hatamizadeh et al., 2022, arXiv:2201.01266",
        ),
        notes="No SHA-256 is published: the digest of the downloaded file is logged and recorded in the report.",
    ),
    WeightSource(
        name="torchxrayvision-all",
        adapter="torchxrayvision-densenet",
        description="TorchXRayVision DenseNet-121 'densenet121-res224-all', chest X-ray multi-label classification",
        files={
            "densenet121": WeightFile(
                "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
                "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
                sha256=None,
                spatial_dims=2,
                in_channels=1,
            )
        },
        provenance=Provenance(
            method="supervised multi-label classification (18 pathologies)",
            source_data="NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR, Google, OpenI, RSNA Pneumonia (Kaggle)",
            modality="CXR",
            input_size=(224, 224),
            intensity_normalisation="[0, 255] mapped to [-1024, 1024] (xrv.datasets.normalize(img, 255)), 1 channel",
            # radiograph percentile scaling to [0, 1] then the XRV range: the package's CXR reading of "8-bit"
            preprocessing={
                "intensity": {"name": "percentile", "lower": 0.5, "upper": 99.5, "b_min": -1024.0, "b_max": 1024.0}
            },
            licence="Apache-2.0 (torchxrayvision); the CXR datasets keep their own licences",
            citation="Cohen et al., 2022, arXiv:2111.00595",
        ),
        notes=(
            "The published file is a whole pickled model, which torch.load(weights_only=True) refuses: loading this "
            "source by name fails with an explanation. Convert it once in a trusted environment with "
            "torch.save(xrv.models.DenseNet(weights='densenet121-res224-all').state_dict(), path) and load the path."
        ),
    ),
)


def _load_catalogue() -> None:
    # the catalogue imports this module's record types, so it is read on first lookup rather than imported above
    from monai_transfer.weights.catalogue import CATALOGUE

    for source in CATALOGUE:
        if source.name not in _SOURCES:  # a source the user registered first keeps its name
            _SOURCES.register(source)


_SOURCES: Registry[WeightSource] = Registry("weight source", loader=_load_catalogue)
for _source in _BUILTIN:
    _SOURCES.register(_source)

_ZOO = "monai-zoo:"


def _split_version(name: str) -> tuple[str, str | None]:
    """``"monai-zoo:NAME@VERSION"`` -> ``("monai-zoo:NAME", "VERSION")``; other names are returned whole."""
    if name.startswith(_ZOO) and "@" in name:
        base, _, version = name.partition("@")
        return base, version or None
    return name, None


def register_source(source: WeightSource, overwrite: bool = False) -> WeightSource:
    """Add a source; ``KeyError`` when the name is taken and ``overwrite`` is False."""
    return _SOURCES.register(source, overwrite=overwrite)


def is_source_name(name: Any) -> bool:
    """Whether ``name`` is a registered source name."""
    return isinstance(name, str) and _split_version(name)[0] in _SOURCES


def get_source(name: str) -> WeightSource:
    """The registered source ``name`` (a pinned zoo version gives its bundle's source); ``KeyError`` naming close
    and known ones otherwise."""
    return _SOURCES.get(_split_version(name)[0])


def list_sources(backbone_name: str | None = None) -> list[str]:
    """Names of the registered sources, sorted; only those with a file for ``backbone_name`` when given."""
    return sorted(n for n, s in _SOURCES.items() if backbone_name is None or backbone_name in s.files)


def resolve_source(name: str, backbone_name: str | None) -> tuple[WeightSource, WeightFile]:
    """The source and its file for a backbone; clear errors when the backbone is unknown or not covered."""
    source = get_source(name)
    if not backbone_name:
        raise ValueError(
            f"Source {name!r} has one file per backbone ({sorted(source.files)}); the module has no backbone_name. "
            "Build it with monai_transfer.networks.create_backbone, or set module.backbone_name."
        )
    if backbone_name not in source.files:
        raise KeyError(
            f"Source {name!r} has no weights for backbone {backbone_name!r}; it covers {sorted(source.files)}. "
            f"Sources for {backbone_name!r}: {list_sources(backbone_name)}."
        )
    wfile = source.files[backbone_name]
    version = _split_version(name)[1]
    if version is not None:  # a pinned model-zoo bundle: the same encoder map, another version of the file
        wfile = replace(wfile, url=f"{wfile.url.partition('@')[0]}@{version}")
    return source, wfile


def source_backbone_kwargs(name: Any, backbone_name: str | None = None) -> dict[str, Any]:
    """Keyword arguments a backbone must be built with to fit a source's weights.

    Returns ``{}`` for anything that is not a registered source name (a path, a state dict, None), and for a
    source without a file for ``backbone_name``, so ``create_backbone`` can call it unconditionally::

        kwargs = {**source_backbone_kwargs(pretrained, name), **kwargs}

    Args:
        name: a source name (or anything else).
        backbone_name: the backbone's registry name; when None, the kwargs shared by all of the source's files.
    """
    if not is_source_name(name):
        return {}
    source = get_source(name)
    if backbone_name is not None:
        f = source.files.get(backbone_name)
        return dict(f.backbone_kwargs) if f is not None else {}
    common: dict[str, Any] | None = None
    for f in source.files.values():
        kw = f.backbone_kwargs
        common = dict(kw) if common is None else {k: v for k, v in common.items() if kw.get(k, object()) == v}
    return common or {}
