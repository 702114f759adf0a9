"""MLP heads of the joint-embedding SSL methods: projector, predictor and the DINO head.

The heads act on pooled embeddings ``(B, num_features)`` (``backbone.forward_features``), so they are the same in
2D and 3D. Hidden layers are ``Linear -> norm -> act``; the last layer is ``Linear`` with an optional, non-affine
norm (SimSiam's projector, MoCo v3's projector).

Norms (``norm``, ``last_norm``): ``"batch"`` (``BatchNorm1d``, the papers' choice: SimCLR, MoCo v3, BYOL, SimSiam,
Barlow Twins, VICReg), ``"layer"`` (``LayerNorm``: per-sample, so the output of a sample does not depend on the rest
of the batch; use it where per-rank batch statistics must not differ and ``SyncBatchNorm`` is unavailable, e.g. CPU
DDP with gloo) or ``None``. A ``Linear`` followed by batch norm has no bias (the norm's shift replaces it), as in
the official SimSiam, MoCo v3 and Barlow Twins code and in lightly's heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ProjectionHead", "PredictionHead", "DINOHead", "make_norm"]

_NORMS = ("batch", "layer", None)


def make_norm(norm: str | None, dim: int, affine: bool = True) -> nn.Module | None:
    """A 1-D feature norm for an MLP head, or ``None``.

    Args:
        norm: ``"batch"``, ``"layer"`` or ``None`` (case-insensitive).
        dim: number of features.
        affine: learnable scale and shift (``False`` for the non-affine last norm of SimSiam / MoCo v3).

    Raises:
        ValueError: an unknown ``norm``.
    """
    key = norm.lower() if isinstance(norm, str) else norm
    if key not in _NORMS:
        raise ValueError(f"head norm must be one of {_NORMS}, got {norm!r}.")
    if key == "batch":
        return nn.BatchNorm1d(dim, affine=affine)
    if key == "layer":
        return nn.LayerNorm(dim, elementwise_affine=affine)
    return None


def _mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int,
    norm: str | None,
    act: str | tuple,
    last_norm: str | None,
) -> nn.Sequential:
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
    if min(in_dim, hidden_dim, out_dim) < 1:
        raise ValueError(f"head dimensions must be positive, got in={in_dim}, hidden={hidden_dim}, out={out_dim}.")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        hidden_norm = make_norm(norm, hidden_dim)
        layers.append(nn.Linear(dim, hidden_dim, bias=not isinstance(hidden_norm, nn.BatchNorm1d)))
        if hidden_norm is not None:
            layers.append(hidden_norm)
        layers.append(get_act_layer(act))
        dim = hidden_dim
    out_norm = make_norm(last_norm, out_dim, affine=False)
    layers.append(nn.Linear(dim, out_dim, bias=not isinstance(out_norm, nn.BatchNorm1d)))
    if out_norm is not None:
        layers.append(out_norm)
    return nn.Sequential(*layers)


class ProjectionHead(nn.Module):
    """MLP projector ``(B, in_dim) -> (B, out_dim)``: ``num_layers - 1`` hidden ``Linear-norm-act`` layers, then a
    ``Linear`` with an optional non-affine ``last_norm``.

    Paper settings (``in_dim`` = 2048 for a ResNet-50):

    * SimCLR (Chen et al. 2020, arXiv:2002.05709): 2 layers, hidden 2048, out 128, batch norm.
    * MoCo v2 (Chen et al. 2020, arXiv:2003.04297): 2 layers, hidden 2048, out 128, no norm.
    * BYOL (Grill et al. 2020, arXiv:2006.07733): 2 layers, hidden 4096, out 256, batch norm.
    * SimSiam (Chen and He 2021, arXiv:2011.10566): 3 layers, hidden = out = 2048, batch norm, ``last_norm="batch"``.
    * MoCo v3 (Chen, Xie and He 2021, arXiv:2104.02057): 2 (ResNet) or 3 (ViT) layers, hidden 4096, out 256,
      batch norm, ``last_norm="batch"``.
    * Barlow Twins (Zbontar et al. 2021, arXiv:2103.03230) and VICReg (Bardes et al. 2022, arXiv:2105.04906):
      3 layers, hidden = out = 8192, batch norm.

    Args:
        in_dim: input features (the backbone's ``num_features``).
        hidden_dim: width of the hidden layers.
        out_dim: output features.
        num_layers: number of ``Linear`` layers (1 = a single linear map).
        norm: norm after each hidden ``Linear``: ``"batch"``, ``"layer"`` or ``None``.
        act: activation after each hidden norm, any name ``monai.networks.layers.factories.Act`` knows
            (``"relu"``, ``"gelu"``) or a ``(name, kwargs)`` tuple.
        last_norm: non-affine norm after the last ``Linear`` (``"batch"`` in SimSiam and MoCo v3), or ``None``.

    Raises:
        ValueError: ``num_layers < 1``, non-positive dimensions or an unknown norm.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        norm: str | None = "batch",
        act: str | tuple = "relu",
        last_norm: str | None = None,
    ) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), int(hidden_dim), int(out_dim)
        self.layers = _mlp(self.in_dim, self.hidden_dim, self.out_dim, int(num_layers), norm, act, last_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` ``(B, in_dim)`` to ``(B, out_dim)``."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.in_dim}), got {tuple(x.shape)}.")
        return self.layers(x)


class PredictionHead(ProjectionHead):
    """The predictor of BYOL, SimSiam and MoCo v3: an MLP on the projection, ``(B, in_dim) -> (B, out_dim)``.

    Paper settings: BYOL 2 layers, hidden 4096, out 256, batch norm; SimSiam 2 layers, bottleneck hidden 512 for a
    2048-d projection, batch norm; MoCo v3 2 layers, hidden 4096, out 256, batch norm (no last norm).

    Args:
        in_dim: projection size.
        hidden_dim: predictor width (a bottleneck in SimSiam).
        out_dim: output size; ``None`` means ``in_dim`` (the predictor regresses the other view's projection).
        num_layers: number of ``Linear`` layers.
        norm: ``"batch"``, ``"layer"`` or ``None`` after each hidden layer.
        act: hidden activation (see ``ProjectionHead``).
        last_norm: optional non-affine norm on the output (``None`` in all three papers).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 4096,
        out_dim: int | None = None,
        num_layers: int = 2,
        norm: str | None = "batch",
        act: str | tuple = "relu",
        last_norm: str | None = None,
    ) -> None:
        super().__init__(in_dim, hidden_dim, in_dim if out_dim is None else out_dim, num_layers, norm, act, last_norm)


class DINOHead(nn.Module):
    """The DINO head: MLP -> L2-normalised bottleneck -> weight-normalised ``Linear`` to ``out_dim`` logits.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294 (Sec. 3.1,
    Appendix: 3 layers, hidden 2048, GELU, bottleneck 256, no batch norm for ViT, K = 65536). The last layer has no
    bias and is weight-normalised (``torch.nn.utils.parametrizations.weight_norm``) with the norm ``g`` set to 1;
    ``norm_last_layer=True`` freezes ``g`` so every prototype keeps unit norm, which the paper found stabilises
    training (ViT-S reaches higher accuracy with ``False``).

    Args:
        in_dim: input features (the backbone's ``num_features``).
        out_dim: ``K``, the number of output logits (prototypes).
        hidden_dim: MLP width.
        bottleneck_dim: size of the L2-normalised bottleneck.
        num_layers: ``Linear`` layers before the bottleneck (the last of them outputs the bottleneck).
        norm: ``None`` (paper, ViT), ``"batch"`` (the paper's ResNet option ``use_bn_in_head``) or ``"layer"``.
        act: hidden activation (GELU in the paper).
        norm_last_layer: freeze the weight norm of the last layer at 1.

    Raises:
        ValueError: non-positive dimensions, ``num_layers < 1`` or an unknown norm.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm: str | None = None,
        act: str | tuple = "gelu",
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.mlp = _mlp(self.in_dim, int(hidden_dim), int(bottleneck_dim), int(num_layers), norm, act, None)
        self.mlp.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(int(bottleneck_dim), self.out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # g, (out_dim, 1)
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)
        self.norm_last_layer = bool(norm_last_layer)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # DINO's init: truncated normal (std 0.02) for linear weights, zero bias
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_dim)`` for embeddings ``x`` ``(B, in_dim)``."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"DINOHead expects input (B, {self.in_dim}), got {tuple(x.shape)}.")
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))
