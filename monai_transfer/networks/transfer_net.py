"""``TransferNet``: a backbone plus a task head, the network that fine-tuning trains and bundles ship.

>>> from monai_transfer.networks import create_transfer_net
>>> net = create_transfer_net("resnet18", task="segmentation", spatial_dims=3, in_channels=1, num_classes=3)
>>> sorted({k.split(".")[0] for k in net.state_dict()})
['backbone', 'head']

In a bundle's ``network_def``::

    {"_target_": "monai_transfer.networks.create_transfer_net", "backbone": "swin_unetr", "task": "segmentation",
     "spatial_dims": 3, "in_channels": 1, "num_classes": 14, "pretrained": "@pretrained_path"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from monai_transfer.networks.decoders import create_decoder, parse_feature_info
from monai_transfer.networks.heads import ClassificationHead
from monai_transfer.networks.registry import create_backbone

__all__ = ["TransferNet", "create_transfer_net", "TASKS"]

TASKS = ("classification", "segmentation")


class TransferNet(nn.Module):
    """A backbone and a head, with the one forward rule that the head's protocol selects.

    * a classification head (``needs_features`` false) gets the pooled embedding:
      ``head(backbone.forward_features(x))`` -> ``(B, num_classes)``;
    * a decoder (``needs_features = True``) gets the image and the stage maps:
      ``head(x, backbone.forward_intermediates(x))`` -> ``(B, out_channels, *spatial)``.

    ``state_dict`` keys are ``backbone.*`` and ``head.*``, so a backbone checkpoint loads into ``net.backbone`` and
    a fine-tuned network's backbone can be taken out again. The rule is a TorchScript constant, so scripting
    compiles only the branch in use.

    Args:
        backbone: a backbone with the ``monai_transfer`` surface (``forward_features``, ``forward_intermediates``,
            ``feature_info``, ``num_features``), e.g. from ``create_backbone``.
        head: a ``ClassificationHead``, a decoder from ``monai_transfer.networks.decoders``, or any module
            following the protocol above.
    """

    __constants__ = ["needs_features"]

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        for attr in ("forward_features", "forward_intermediates", "feature_info", "num_features"):
            if not hasattr(backbone, attr):
                raise ValueError(f"TransferNet backbone lacks {attr!r}; build it with create_backbone.")
        self.backbone = backbone
        self.head = head
        self.needs_features = bool(getattr(head, "needs_features", False))
        self.spatial_dims = int(getattr(backbone, "spatial_dims", 0))
        self.in_channels = int(getattr(backbone, "in_channels", 0))
        self.task = "segmentation" if self.needs_features else "classification"
        self._check_head()

    def _check_head(self) -> None:
        head, backbone = self.head, self.backbone
        if not self.needs_features:
            in_features = getattr(head, "in_features", None)
            if in_features is not None and in_features != backbone.num_features:
                raise ValueError(f"head.in_features={in_features} but backbone.num_features={backbone.num_features}.")
            return
        for attr in ("spatial_dims", "in_channels"):
            if getattr(head, attr, None) not in (None, getattr(backbone, attr, None)):
                raise ValueError(f"decoder {attr}={getattr(head, attr)} but backbone {attr}={getattr(backbone, attr)}.")
        info = getattr(head, "feature_info", None)
        if info is not None:
            want = [(s.channels, s.stride) for s in parse_feature_info(backbone.feature_info)]
            got = [(s.channels, s.stride) for s in parse_feature_info(info)]
            if want != got:
                raise ValueError(f"decoder built for stages (channels, stride) {got}, backbone has {want}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.needs_features:
            return self.head(x, self.backbone.forward_intermediates(x))
        return self.head(self.backbone.forward_features(x))

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        """The backbone's stages (names prefixed ``backbone.``) followed by ``"head"``, for freezing and LR decay."""
        stages = {
            f"backbone.{name}": tuple(f"backbone.{p}" for p in prefixes)
            for name, prefixes in self.backbone.param_stages().items()
        }
        stages["head"] = ("head",)
        return stages

    @classmethod
    def from_config(cls, **kwargs: Any) -> TransferNet:
        """Same as ``create_transfer_net(**kwargs)``."""
        return create_transfer_net(**kwargs)


def create_transfer_net(
    backbone: str | nn.Module = "resnet18",
    task: str = "classification",
    spatial_dims: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    out_channels: int | None = None,
    pretrained: str | None = None,
    strict: bool = True,
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    seed: int | None = None,
    pretrained_source: str | None = None,
) -> TransferNet:
    """Build a ``TransferNet`` from keyword arguments (the ``_target_`` of a bundle's ``network_def``).

    Args:
        backbone: a registry name (``list_backbones()``) or an already built backbone.
        task: ``"classification"`` (``ClassificationHead``) or ``"segmentation"`` (decoder chosen by
            ``create_decoder`` from the backbone's ``feature_info``: UNETR for ViTs, UNet otherwise).
        spatial_dims: 2 or 3; default 2 for a name, the backbone's own for a module (a different value raises).
        in_channels: input channels; default 1 for a name, the backbone's own for a module.
        num_classes: number of classes (logits), background included for segmentation.
        out_channels: MONAI's name for ``num_classes`` in segmentation networks; give one of the two.
        pretrained: for a named backbone, ``None``, a checkpoint path or a known source name, loaded by
            ``create_backbone`` into the backbone (its ``load_report`` stays on ``net.backbone``).
        strict: passed to ``create_backbone`` with ``pretrained``.
        pretrained_source: the layout of a ``pretrained`` file (a source or adapter name; ``create_backbone``).
        backbone_kwargs: extra arguments of the backbone (e.g. ``{"img_size": 96}`` for a ViT).
        head_kwargs: arguments of ``ClassificationHead`` (``hidden_dims``, ``dropout``, ``multi_label``...) or of
            ``create_decoder`` (``kind``, ``feature_size``, ``decoder_channels``, ``norm``...).
        seed: initialise the new layers from this seed, on a forked RNG: the same network for the same seed, and
            the caller's global RNG untouched (``None``: the global RNG, as torch modules do).
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return create_transfer_net(backbone, task, spatial_dims, in_channels, num_classes, out_channels,
                                       pretrained, strict, backbone_kwargs, head_kwargs, None, pretrained_source)  # fmt: skip
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if num_classes is None and out_channels is None:
        raise ValueError("give num_classes (or out_channels for segmentation).")
    if num_classes is not None and out_channels is not None and num_classes != out_channels:
        raise ValueError(f"num_classes={num_classes} and out_channels={out_channels} disagree; give one of them.")
    n_out = int(num_classes if num_classes is not None else out_channels)  # type: ignore[arg-type]
    if n_out < 1:
        raise ValueError(f"num_classes must be positive, got {n_out}.")
    if in_channels is not None and in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}.")
    head_kwargs = dict(head_kwargs or {})
    if isinstance(backbone, str):
        model = create_backbone(
            backbone,
            spatial_dims=2 if spatial_dims is None else spatial_dims,
            in_channels=1 if in_channels is None else in_channels,
            pretrained=pretrained,
            strict=strict,
            pretrained_source=pretrained_source,
            **dict(backbone_kwargs or {}),
        )
    elif isinstance(backbone, nn.Module):
        if pretrained is not None or backbone_kwargs:
            raise ValueError("pretrained and backbone_kwargs apply to a backbone name, not to a built backbone.")
        model = backbone
        for name, value in (("spatial_dims", spatial_dims), ("in_channels", in_channels)):
            if value is not None and value != getattr(model, name, value):
                raise ValueError(f"{name}={value} but the given backbone has {name}={getattr(model, name)}.")
    else:
        raise TypeError(f"backbone must be a registry name or an nn.Module, got {type(backbone).__name__}.")

    if task == "classification":
        head: nn.Module = ClassificationHead(in_features=model.num_features, num_classes=n_out, **head_kwargs)
    else:
        head = create_decoder(
            spatial_dims=model.spatial_dims,
            in_channels=model.in_channels,
            out_channels=n_out,
            feature_info=model.feature_info,
            **head_kwargs,
        )
    return TransferNet(model, head)
