"""Write the shipped bundles in ``bundles/`` (one folder each) with ``monai_transfer.bundle.create_bundle``.

Every bundle is a *starting point*: a backbone, its published pretrained weights (named in ``large_files.yml``: URL and
the hash the publisher gives; never stored in git) and the fine-tuning, evaluation and inference configs that turn it
into a classifier or a segmenter. The specs below are the whole definition; run the script again after a change of
the templates and commit the result::

    python scripts/make_bundles.py                        # all bundles into bundles/ (replacing them)
    python scripts/make_bundles.py --only swin_unetr_ssl_seg3d --check
    python scripts/make_bundles.py --out /tmp/b --list

Nothing is downloaded: the writer reads the sources' registered provenance (``monai_transfer.weights.sources``).
``--check`` runs ``bundle check`` on each written bundle (export included; slow for the 3D networks).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: the demo data's tissue classes (``monai_transfer.data.make_demo_data``), background first
TISSUE = ["background", "csf_other_brain", "gray_matter", "white_matter"]
CXR = ["normal", "pneumonia"]
_CLS_USE = (
    "Fine-tune on a datalist of 2D images with an integer 'label' per image (0 {0}, 1 {1}); inference writes the "
    "class probabilities of every image to eval/predictions.jsonl."
)
_SEG_USE = (
    "Fine-tune on a datalist of 3D images with a label map per image (0 background, 1 CSF and other brain, 2 gray "
    "matter, 3 white matter: the classes of the package's demo data); recreate the bundle with "
    "'monai-transfer bundle create --labels ...' for other structures. Training crops 96^3 patches; evaluation and "
    "inference run a 96^3 sliding window and write each label map with its input's geometry."
)

#: folder name -> create_bundle keyword arguments (the bundle's whole definition)
BUNDLES: dict[str, dict[str, Any]] = {
    "resnet50_imagenet_cls2d": {
        "backbone": "resnet50",
        "pretrained": "torchvision-imagenet1k-v2",
        "task": "classification",
        "spatial_dims": 2,
        "labels": CXR,
        "spatial_size": 224,
        "modality": "CXR",
        "name": "ResNet-50 (torchvision ImageNet) 2D classification",
        "description": "ResNet-50 with torchvision's ImageNet-1k weights (IMAGENET1K_V2), its RGB stem converted to "
        "one channel by channel surgery (the three filters summed), with a new classification head for 2D "
        "grey-scale images such as chest radiographs, at 224x224 with ImageNet's intensity statistics. "
        + _CLS_USE.format(*CXR),
    },
    "densenet121_xrv_cls2d": {
        "backbone": "densenet121",
        "pretrained": "torchxrayvision-all",
        "task": "classification",
        "spatial_dims": 2,
        "labels": CXR,
        "spatial_size": 224,
        "modality": "CXR",
        "name": "DenseNet-121 (TorchXRayVision) 2D chest radiograph classification",
        "description": "DenseNet-121 pretrained by TorchXRayVision on 18 pathologies of seven public chest "
        "radiograph collections (a modality-matched starting point), one input channel, with a new classification "
        "head at 224x224 and TorchXRayVision's [-1024, 1024] intensity range. " + _CLS_USE.format(*CXR) + " "
        "TorchXRayVision publishes a whole pickled model, which the package refuses to unpickle: convert the "
        "downloaded file once to a state_dict (docs/README.md says how).",
    },
    "vit_small_timm_cls2d": {
        "backbone": "vit_small_patch16",
        "pretrained": "timm-augreg-in21k-ft-in1k",
        "task": "classification",
        "spatial_dims": 2,
        "labels": CXR,
        "spatial_size": 224,
        "modality": "CXR",
        "name": "ViT-S/16 (timm AugReg ImageNet-21k) 2D classification",
        "description": "ViT-S/16 with timm's AugReg weights (ImageNet-21k, fine-tuned on ImageNet-1k), its RGB patch "
        "embedding converted to one channel by channel surgery, with a new classification head for 2D grey-scale "
        "images at 224x224 (timm's intensity statistics, 0.5/0.5). " + _CLS_USE.format(*CXR),
    },
    "resnet50_imagenet_seg3d": {
        "backbone": "resnet50",
        "pretrained": "torchvision-imagenet1k-v2",
        "task": "segmentation",
        "spatial_dims": 3,
        "labels": TISSUE,
        "patch_size": 96,
        "modality": "MR",
        "name": "ResNet-50 (torchvision ImageNet, inflated to 3D) 3D segmentation",
        "description": "ResNet-50 encoder with torchvision's ImageNet-1k weights (IMAGENET1K_V2) inflated to 3D (each "
        "2D kernel repeated along the new axis and divided by its depth, I3D-style) and converted to one channel, "
        "with a U-Net decoder, for 3D segmentation with ImageNet's intensity statistics. " + _SEG_USE,
        "overrides": {"batch_size": 2},
    },
    "resnet50_medicalnet_seg3d": {
        "backbone": "resnet50",
        "pretrained": "medicalnet-23datasets",
        "task": "segmentation",
        "spatial_dims": 3,
        "labels": TISSUE,
        "patch_size": 96,
        "modality": "MR",
        "name": "ResNet-50 (MedicalNet) 3D segmentation",
        "description": "3D ResNet-50 encoder pretrained by MedicalNet (Med3D) on 23 public CT and MR segmentation "
        "datasets, with a U-Net decoder, for 3D segmentation with MedicalNet's intensity mapping (z-score over "
        "non-zero voxels). " + _SEG_USE,
        "overrides": {"batch_size": 2},
    },
    "swin_unetr_ssl_seg3d": {
        "backbone": "swin_unetr",
        "pretrained": "swinunetr-ssl-5050ct",
        "task": "segmentation",
        "spatial_dims": 3,
        "labels": TISSUE,
        "patch_size": 96,
        "modality": "MR",
        # the SSL encoder saw CT windowed to [0, 1]; MR has no Hounsfield scale, so the bundle maps each volume's
        # 0.5-99.5 percentiles to the same [0, 1] range (an override of the source's CT window, recorded below)
        "intensity": {"name": "percentile", "lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0},
        "extra_metadata": {
            "intensity_override": "percentile 0.5-99.5 to [0, 1] instead of the source's CT window "
            "(HU -1000..1000 to [0, 1]): MR volumes have no Hounsfield scale; recreate the bundle without "
            "intensity= (or with --intensity range --intensity-arg a_min=-1000 a_max=1000) for CT"
        },
        "name": "SwinUNETR (self-supervised on 5,050 CT volumes) 3D segmentation",
        "description": "SwinUNETR whose Swin transformer encoder was pretrained with self-supervision (inpainting, "
        "rotation and contrastive coding) on 5,050 public CT volumes (Tang et al., 2022), feature size 48, with "
        "a U-Net decoder over its five feature maps, for 3D segmentation. The encoder saw CT windowed to [0, 1]; this bundle maps each "
        "volume's 0.5-99.5 intensity percentiles to [0, 1] instead, which fits MR (for CT, recreate it with "
        "'--intensity range --intensity-arg a_min=-1000 a_max=1000'). " + _SEG_USE,
        "overrides": {"batch_size": 1},
    },
    "segresnet_ds_ctfm_seg3d": {
        "backbone": "segresnet_ds",
        "pretrained": "ct-fm",
        "task": "segmentation",
        "spatial_dims": 3,
        "labels": TISSUE,
        "patch_size": 96,
        "modality": "CT",
        "name": "SegResNetDS encoder (CT-FM, self-supervised on 148,000 CT scans) 3D segmentation",
        "description": "The SegResNetDS encoder of CT-FM (Pai et al., 2025), pretrained by intra-sample contrastive "
        "learning on 148,000 CT scans of the NCI Imaging Data Commons, with a U-Net decoder over its five feature "
        "maps, for 3D segmentation with CT-FM's intensity contract (HU -1024..2048 to [0, 1]: a CT start; recreate "
        "the bundle with --intensity for MR). " + _SEG_USE,
        "overrides": {"batch_size": 1},
    },
    "vit_small_dinov2_cls2d": {
        "backbone": "vit_small_patch14",
        "pretrained": "dinov2-lvd142m",
        "task": "classification",
        "spatial_dims": 2,
        "labels": CXR,
        "spatial_size": 224,
        "modality": "CXR",
        "name": "ViT-S/14 (DINOv2) 2D classification",
        "description": "ViT-S/14 with DINOv2's self-supervised weights (LVD-142M), its 37x37 position embeddings "
        "resampled to the 16x16 patch grid of 224x224 images and its RGB patch embedding converted to one channel by "
        "channel surgery, with a new classification head for 2D grey-scale images (ImageNet intensity statistics). "
        + _CLS_USE.format(*CXR),
    },
    "resnet50_radimagenet_cls2d": {
        "backbone": "resnet50",
        "pretrained": "radimagenet",
        "task": "classification",
        "spatial_dims": 2,
        "labels": CXR,
        "spatial_size": 224,
        "modality": "CXR",
        "name": "ResNet-50 (RadImageNet) 2D classification",
        "description": "ResNet-50 pretrained by supervised classification of 1.35 million CT, MR and ultrasound "
        "images (RadImageNet, a modality-matched medical start), its RGB stem converted to one channel, with a new "
        "classification head at 224x224 and RadImageNet's [-1, 1] intensity range. " + _CLS_USE.format(*CXR) + " "
        "RadImageNet hands its PyTorch weights out through a Google Drive folder: download ResNet50.pt once and put it "
        "where the download error says (docs/weights.md).",
    },
}


#: folder name -> create_pretraining_bundle keyword arguments: self-supervised pretraining on the user's unlabeled
#: scans, writing the encoder and its fine-tuning bundle (the method is a value: another method is one more entry)
PRETRAINING: dict[str, dict[str, Any]] = {
    "ssl_simclr_resnet18_2d": {
        "method": "simclr",
        "backbone": "resnet18",
        "spatial_dims": 2,
        "modality": "xr",
        "epochs": 100,
        "batch_size": 64,
        "name": "SimCLR pretraining of a 2D ResNet-18 on unlabeled radiographs or slices",
    },
    "ssl_byol_resnet50_3d": {
        "method": "byol",
        "backbone": "resnet50",
        "spatial_dims": 3,
        "modality": "mr",
        "epochs": 100,
        "batch_size": 8,
        "name": "BYOL pretraining of a 3D ResNet-50 on unlabeled MR volumes",
    },
}


def make(name: str, out_dir: Path, check: bool = False) -> int:
    """Write bundle ``name`` under ``out_dir`` (replacing it); with ``check``, lint it and return the problem count."""
    from monai_transfer.bundle import check_bundle, create_bundle
    from monai_transfer.bundle.pretraining import create_pretraining_bundle

    start = time.perf_counter()
    if name in PRETRAINING:
        path = create_pretraining_bundle(out_dir / name, overwrite=True, **PRETRAINING[name])
    else:
        spec = dict(BUNDLES[name])
        path = create_bundle(out_dir / name, overwrite=True, num_classes=len(spec["labels"]), **spec)
    print(f"{path}: written in {time.perf_counter() - start:.1f} s", flush=True)
    if not check:
        return 0
    start = time.perf_counter()
    problems = check_bundle(path)
    for p in problems:
        print(f"  {p}")
    print(f"{path}: {len(problems)} problems ({time.perf_counter() - start:.1f} s)", flush=True)
    return len(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bundles", help="folder the bundles go in")
    parser.add_argument("--only", nargs="*", default=None, metavar="PATTERN", help="bundle names (glob patterns)")
    parser.add_argument("--check", action="store_true", help="run bundle check on each bundle written")
    parser.add_argument("--list", action="store_true", help="list the bundle names and exit")
    args = parser.parse_args(argv)
    names = [n for n in [*BUNDLES, *PRETRAINING] if not args.only or any(fnmatch.fnmatch(n, p) for p in args.only)]
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no bundle matches {args.only}; known: {[*BUNDLES, *PRETRAINING]}", file=sys.stderr)
        return 2
    problems = sum(make(n, args.out, args.check) for n in names)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
