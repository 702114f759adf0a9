"""Stand-ins for the published starting weights of the shipped bundles, in each publisher's key layout.

Tests never download: each builder writes a file with the architecture, key names, nesting and file format of the
published one (random values; the layouts are those ``tests/weights/test_published_layouts.py`` and
``tests/weights/test_reference_equivalence.py`` check against the reference implementations), and
:func:`point_large_files_at` rewrites a bundle's ``large_files.yml`` to ``file://`` copies with their SHA-256, so that
MONAI's own ``download_large_files`` fetches and verifies them as it would the real URLs.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
import yaml


def _torchvision_resnet50(path: Path) -> None:
    """``resnet50-11ad3fa6.pth``: torchvision's ``state_dict`` (``conv1``, ``layerN.M.*``, ``fc``), torch.save."""
    import torchvision

    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)


def _xrv_densenet121(path: Path) -> None:
    """TorchXRayVision's DenseNet-121 (1-channel ``features.conv0``, 18-way classifier, ``op_threshs``) as the
    ``state_dict`` the bundle's README converts the published pickled model to."""
    import torchvision

    model = torchvision.models.densenet121(weights=None)
    model.features.conv0 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.classifier = torch.nn.Linear(1024, 18)
    model.register_buffer("op_threshs", torch.rand(18))
    torch.save(model.state_dict(), path)


def _timm_vit_small(path: Path) -> None:
    """timm's ``vit_small_patch16_224`` ``state_dict`` as Hugging Face's ``model.safetensors``."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _medicalnet_resnet50(path: Path) -> None:
    """``resnet_50_23dataset.pth``: ``{"state_dict": {"module.<key>"}}`` of a 3D ResNet-50, shortcut B, no fc."""
    from monai.networks import nets

    net = nets.resnet50(
        spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False
    )
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, path)


def _swinunetr_ssl(path: Path) -> None:
    """``model_swinvit.pt``: ``{"state_dict": {"module.<key>"}}`` of the Swin encoder, MLPs named fc1/fc2, plus the
    final norm of the pretraining network (what MONAI's ``SwinUNETR.load_from`` reads)."""
    from monai_transfer.networks import create_backbone

    state = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=48).state_dict()
    out = {}
    for k, v in state.items():
        out["module." + k.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2.")] = v
    width = state["layers4.0.downsample.reduction.weight"].shape[0]
    out["module.norm.weight"] = torch.ones(width)
    out["module.norm.bias"] = torch.zeros(width)
    torch.save({"state_dict": out}, path)


def _ct_fm(path: Path) -> None:
    """CT-FM's ``model.safetensors``: MONAI ``SegResEncoder(blocks_down=(1, 2, 2, 4, 4))`` keys, unprefixed."""
    from monai.networks.nets.segresnet_ds import SegResEncoder
    from safetensors.torch import save_file

    net = SegResEncoder(spatial_dims=3, in_channels=1, init_filters=32, blocks_down=(1, 2, 2, 4, 4))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _dinov2_vit_small(path: Path) -> None:
    """timm's ``vit_small_patch14_dinov2.lvd142m`` ``model.safetensors`` (518 px: 37x37 position embeddings)."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _radimagenet_resnet50(path: Path) -> None:
    """``RadImageNet_pytorch/ResNet50.pt``: a torchvision ResNet-50's first nine children as ``backbone.<index>.*``."""
    import torchvision

    trunk = torch.nn.Sequential(*list(torchvision.models.resnet50(weights=None).children())[:9])
    torch.save({"backbone." + k: v for k, v in trunk.state_dict().items()}, path)


#: source name -> builder of its published file (for the backbone the shipped bundles use)
BUILDERS: dict[str, Callable[[Path], None]] = {
    "torchvision-imagenet1k-v2": _torchvision_resnet50,
    "torchxrayvision-all": _xrv_densenet121,
    "timm-augreg-in21k-ft-in1k": _timm_vit_small,
    "medicalnet-23datasets": _medicalnet_resnet50,
    "swinunetr-ssl-5050ct": _swinunetr_ssl,
    "ct-fm": _ct_fm,
    "dinov2-lvd142m": _dinov2_vit_small,
    "radimagenet": _radimagenet_resnet50,
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_published(source: str, folder: Path) -> Path:
    """Write the stand-in of ``source``'s published file into ``folder`` (once; reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source}.bin"
    if not path.is_file():
        tmp = folder / f".{source}.tmp"
        BUILDERS[source](tmp)
        tmp.replace(path)
    return path


def point_large_files_at(bundle: Path, files: dict[str, Path]) -> None:
    """Rewrite ``bundle/large_files.yml`` so that each entry's URL is a ``file://`` copy with its SHA-256.

    Args:
        bundle: a (temporary) copy of a shipped bundle.
        files: the entry's file name (``Path(entry["path"]).name``) -> the stand-in file to serve.
    """
    lf = bundle / "large_files.yml"
    data = yaml.safe_load(lf.read_text())
    for entry in data["large_files"]:
        src = files[Path(entry["path"]).name]
        served = bundle.parent / "served" / Path(entry["path"]).name
        served.parent.mkdir(parents=True, exist_ok=True)
        if not served.exists():
            try:
                served.hardlink_to(src)
            except OSError:
                shutil.copy2(src, served)
        entry["url"] = served.resolve().as_uri()
        entry["hash_val"] = sha256(served)
        entry["hash_type"] = "sha256"
    lf.write_text(yaml.safe_dump(data, sort_keys=False))
