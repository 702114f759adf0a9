"""The self-supervised ImageNet ResNet-50s of the transfer benchmarks (Ericsson et al., 2021, arXiv:2011.13377;
Hosseinzadeh Taher et al., 2021, arXiv:2108.05930), from their authors' own release addresses.

All are torchvision ResNet-50s trained on ImageNet-1k without labels; they differ in the wrapper their training code
saved (read by ``ssl-resnet50`` or ``torchvision-resnet``, see ``monai_transfer.weights.adapters.ssl_resnet``). BYOL and
SimCLR v1/v2 were released as TensorFlow/JAX checkpoints: they load once converted to a torchvision state dict.
"""

from __future__ import annotations

from typing import Any

from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.source_record import WeightFile, WeightSource

__all__ = ["SSL_IMAGENET"]

_NORM = "ImageNet mean/std: (x/255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225), RGB"
_PRE = {"intensity": {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
_CC_BY_NC = "CC-BY-NC-4.0"
_NO_HASH = "No SHA-256 is published: the digest of the download is logged and recorded in the report."
_CONVERT = (
    "Released as a {fmt} checkpoint, which torch.load cannot read: convert it once to a torchvision ResNet-50 "
    "state dict ({how}) and load that file; the URL is the publisher's original."
)


def _source(
    name: str,
    method: str,
    url: str,
    layout: str,
    licence: str,
    citation: str,
    adapter: str = "ssl-resnet50",
    notes: str = _NO_HASH,
    **file_kwargs: Any,
) -> WeightSource:
    return WeightSource(
        name=name,
        adapter=adapter,
        description=f"{method} ResNet-50, self-supervised on ImageNet-1k ({layout})",
        files={"resnet50": WeightFile(url, **file_kwargs)},
        provenance=Provenance(
            method=f"self-supervised: {method}",
            source_data="ImageNet-1k (1.28M natural images, labels unused)",
            modality="natural images (RGB)",
            input_size=(224, 224),
            intensity_normalisation=_NORM,
            preprocessing=_PRE,
            licence=licence,
            citation=citation,
            notes=f"Published layout: {layout}.",
        ),
        notes=notes,
    )


_FAIR = "https://dl.fbaipublicfiles.com/"
_PYCONTRAST = "https://www.dropbox.com/sh/87d24jqsl6ra7t2/"
_PCL = "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/"
_MOCO = "{'state_dict': module.encoder_q.*, module.encoder_k.*, module.queue}"
_SWAV = "module.* at the top level, with projection_head.* and prototypes.*"
_PYC = "{'model': module.encoder.*, module.head.*}, training options as an argparse.Namespace"

SSL_IMAGENET: tuple[WeightSource, ...] = (
    _source("moco-v1-imagenet1k", "MoCo v1 (200 epochs)", _FAIR + "moco/moco_checkpoints/moco_v1_200ep/"
            "moco_v1_200ep_pretrain.pth.tar", _MOCO, _CC_BY_NC + " (facebookresearch/moco)",
            "He et al., 2020, arXiv:1911.05722", filename="moco_v1_200ep_pretrain.pth.tar"),
    _source("moco-v2-imagenet1k", "MoCo v2 (800 epochs)", _FAIR + "moco/moco_checkpoints/moco_v2_800ep/"
            "moco_v2_800ep_pretrain.pth.tar", _MOCO, _CC_BY_NC + " (facebookresearch/moco)",
            "Chen et al., 2020, arXiv:2003.04297", filename="moco_v2_800ep_pretrain.pth.tar"),
    _source("pcl-v1-imagenet1k", "PCL v1 (200 epochs)", _PCL + "PCL_v1_epoch200.pth.tar", _MOCO,
            "MIT (salesforce/PCL)", "Li et al., 2021, arXiv:2005.04966"),
    _source("pcl-v2-imagenet1k", "PCL v2 (200 epochs)", _PCL + "PCL_v2_epoch200.pth.tar", _MOCO,
            "MIT (salesforce/PCL)", "Li et al., 2021, arXiv:2005.04966"),
    _source("swav-imagenet1k", "SwAV (800 epochs, multi-crop)", _FAIR + "deepcluster/swav_800ep_pretrain.pth.tar",
            _SWAV, _CC_BY_NC + " (facebookresearch/swav)", "Caron et al., 2020, arXiv:2006.09882"),
    _source("deepcluster-v2-imagenet1k", "DeepCluster-v2 (800 epochs, multi-crop)",
            _FAIR + "deepcluster/deepclusterv2_800ep_pretrain.pth.tar", _SWAV, _CC_BY_NC + " (facebookresearch/swav)",
            "Caron et al., 2020, arXiv:2006.09882"),
    _source("sela-v2-imagenet1k", "SeLa-v2 (400 epochs, multi-crop)",
            _FAIR + "deepcluster/selav2_400ep_pretrain.pth.tar", _SWAV, _CC_BY_NC + " (facebookresearch/swav)",
            "Asano et al., 2020, arXiv:1911.05371; Caron et al., 2020, arXiv:2006.09882"),
    _source("barlowtwins-imagenet1k", "Barlow Twins (1000 epochs)", _FAIR + "barlowtwins/"
            "ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth", "a torchvision state dict without fc",
            "MIT (facebookresearch/barlowtwins)", "Zbontar et al., 2021, arXiv:2103.03230",
            adapter="torchvision-resnet", filename="barlowtwins_resnet50.pth"),
    _source("insdis-imagenet1k", "InsDis (instance discrimination, memory bank)", _PYCONTRAST +
            "AACcsSIt1_Njv7GsmsuzZ6Sta/InsDis.pth?dl=1", _PYC, "BSD-2-Clause (HobbitLong/PyContrast)",
            "Wu et al., 2018, arXiv:1805.01978", filename="InsDis.pth", safe_globals=("argparse.Namespace",)),
    _source("pirl-imagenet1k", "PIRL (jigsaw-invariant contrast)", _PYCONTRAST +
            "AADN4jKnvTI0U5oT6hTmQZz8a/PIRL.pth?dl=1", _PYC + ", head_jig.*", "BSD-2-Clause (HobbitLong/PyContrast)",
            "Misra & van der Maaten, 2020, arXiv:1912.01991", filename="PIRL.pth",
            safe_globals=("argparse.Namespace",)),
    _source("infomin-imagenet1k", "InfoMin (800 epochs)", _PYCONTRAST + "AAAzMTynP3Qc8mIE4XWkgILUa/InfoMin_800.pth"
            "?dl=1", _PYC, "BSD-2-Clause (HobbitLong/PyContrast)", "Tian et al., 2020, arXiv:2005.10243",
            filename="InfoMin_800.pth", safe_globals=("argparse.Namespace",)),
    _source("byol-imagenet1k", "BYOL (1000 epochs)", "https://storage.googleapis.com/deepmind-byol/checkpoints/"
            "pretrain_res50x1.pkl", "after conversion: {'state_dict': torchvision keys}", "Apache-2.0 "
            "(deepmind/deepmind-research byol)", "Grill et al., 2020, arXiv:2006.07733", adapter="torchvision-resnet",
            notes=_CONVERT.format(fmt="JAX/Haiku pickle", how="e.g. convert_byol in linusericsson/ssl-transfer"),
            filename="byol_pretrain_res50x1.pkl"),
    _source("simclr-v1-imagenet1k", "SimCLR v1 (1000 epochs, ResNet-50 1x)", "https://storage.cloud.google.com/"
            "simclr-checkpoints/simclrv1/pretrain/1x/ResNet50_1x.zip", "after conversion: {'state_dict': torchvision "
            "keys}", "Apache-2.0 (google-research/simclr)", "Chen et al., 2020, arXiv:2002.05709",
            adapter="torchvision-resnet", notes=_CONVERT.format(fmt="TensorFlow", how="e.g. tonylins/simclr-converter"),
            filename="simclr_v1_ResNet50_1x.zip"),
    _source("simclr-v2-imagenet1k", "SimCLR v2 (800 epochs, ResNet-50 1x, no SK)", "https://storage.cloud.google.com/"
            "simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0.zip", "after conversion: a torchvision state dict",
            "Apache-2.0 (google-research/simclr)", "Chen et al., 2020, arXiv:2006.10029", adapter="torchvision-resnet",
            notes=_CONVERT.format(fmt="TensorFlow", how="Separius/SimCLRv2-Pytorch, then the key map of "
                                  "linusericsson/ssl-transfer"), filename="simclr_v2_r50_1x_sk0.zip"),
)  # fmt: skip
