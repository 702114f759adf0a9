"""The one rule of which parameters get no weight decay, shared by fine-tuning and self-supervised pretraining.

Weight decay on normalisation scales/shifts and biases only shrinks them without regularising the function the
network computes; excluding them is the practice of Goyal et al. 2017 (arXiv:1706.02677, "no bias decay"), of
BEiT / timm (Bao et al. 2022, arXiv:2106.08254) and of the SSL recipes (DINO, MAE), which also exclude position
embeddings and class/mask tokens.
"""

from __future__ import annotations

from torch import nn

__all__ = ["NORM_TYPES", "no_weight_decay_names"]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
# parameter names (last component) that timm / BEiT / DINO / MAE exclude from weight decay
_NO_DECAY_SUFFIXES = (
    "pos_embed",
    "cls_token",
    "position_embeddings",
    "absolute_pos_embed",
    "relative_position_bias_table",
    "mask_token",
)


def no_weight_decay_names(net: nn.Module) -> set[str]:
    """Names of parameters that should get no weight decay: biases, 1-D tensors, norm layers, embeddings.

    A module's own ``no_weight_decay()`` (timm convention, a set of names relative to it) is honoured too.
    """
    names: set[str] = set()
    for mod_name, module in net.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        is_norm = isinstance(module, NORM_TYPES)
        for p_name, p in module.named_parameters(recurse=False):
            if is_norm or p.ndim <= 1 or p_name == "bias" or p_name in _NO_DECAY_SUFFIXES:
                names.add(prefix + p_name)
        own = getattr(module, "no_weight_decay", None)
        if callable(own):
            names.update(prefix + str(n) for n in own())
    return names
