"""Classification heads over a backbone's pooled embedding ``(B, num_features)``.

A linear head is the linear probe of transfer-learning studies (Kornblith et al., 2019, arXiv:1805.08974); the
MLP head is the projection-style head of SimCLR-era fine-tuning (Chen et al., 2020, arXiv:2002.05709).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer
from torch import nn

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """Linear or MLP head mapping a pooled embedding to class logits.

    The head always returns **logits** ``(B, num_classes)``; it never applies softmax or sigmoid, so that the loss
    can use the numerically stable fused forms:

    * multi-class (``multi_label=False``, one label per image): ``torch.nn.CrossEntropyLoss`` on integer targets
      ``(B,)`` (or MONAI's ``FocalLoss(use_softmax=True)`` with one-hot targets); probabilities by softmax.
    * multi-label (``multi_label=True``, independent findings per image, e.g. chest X-ray labels): one independent
      sigmoid logit per class, trained with ``torch.nn.BCEWithLogitsLoss`` on float targets ``(B, num_classes)``
      (``pos_weight`` for class imbalance); probabilities by sigmoid.

    ``probabilities(logits)`` applies the matching activation, for inference and metrics.

    Args:
        in_features: size of the embedding, the backbone's ``num_features``.
        num_classes: number of logits.
        hidden_dims: widths of hidden layers; empty (default) gives a linear head, e.g. ``(512,)`` a two-layer MLP.
        dropout: dropout probability before each linear layer (0 disables it).
        act: activation between MLP layers, as in MONAI's ``get_act_layer``.
        norm: optional normalisation after each hidden linear layer, ``"batch"`` (BatchNorm1d) or ``"layer"``
            (LayerNorm), or a MONAI ``(name, kwargs)`` tuple; ``None`` for none.
        multi_label: whether the logits are independent sigmoid logits (multi-label) rather than softmax logits.
        bias: whether the linear layers have a bias.

    Example:
        >>> head = ClassificationHead(in_features=512, num_classes=3, hidden_dims=(256,), dropout=0.2)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 3])
    """

    __constants__ = ["needs_features", "multi_label"]

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        act: str | tuple = "relu",
        norm: str | tuple | None = None,
        multi_label: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be positive, got {in_features} and {num_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}.")
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.multi_label = bool(multi_label)
        self.needs_features = False
        layers: list[nn.Module] = []
        width = self.in_features
        for hidden in self.hidden_dims:
            if dropout > 0:
                layers.append(get_dropout_layer(dropout, dropout_dim=1))
            layers.append(nn.Linear(width, hidden, bias=bias))
            if norm is not None:
                layers.append(_norm_1d(norm, hidden))
            layers.append(get_act_layer(act))
            width = hidden
        if dropout > 0:
            layers.append(get_dropout_layer(dropout, dropout_dim=1))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(width, self.num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from an embedding ``(B, in_features)``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"ClassificationHead expects input (B, {self.in_features}), got shape {x.shape}.")
        return self.fc(self.layers(x))

    @torch.jit.export
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the logits for multi-label heads, softmax over classes otherwise."""
        if self.multi_label:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, multi_label={self.multi_label}"


def _norm_1d(norm: str | tuple, channels: int) -> nn.Module:
    name = norm[0] if isinstance(norm, (tuple, list)) else norm
    if str(name).lower() == "layer":
        kwargs = dict(norm[1]) if isinstance(norm, (tuple, list)) and len(norm) > 1 else {}
        return nn.LayerNorm(channels, **kwargs)
    return get_norm_layer(norm, spatial_dims=1, channels=channels)
