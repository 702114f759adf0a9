"""timm Vision Transformers (Dosovitskiy et al., 2021, arXiv:2010.11929; AugReg weights: Steiner et al., 2022,
arXiv:2106.10270) into MONAI's ``ViT``.

Key map (``blocks.i`` keeps its index)::

    patch_embed.proj.*        -> patch_embedding.patch_embeddings.*
    blocks.i.norm1/norm2      -> blocks.i.norm1/norm2
    blocks.i.attn.qkv         -> blocks.i.attn.qkv      (same (qkv, heads, head_dim) packing as MONAI's SABlock)
    blocks.i.attn.proj        -> blocks.i.attn.out_proj
    blocks.i.mlp.fc1/fc2      -> blocks.i.mlp.linear1/linear2
    norm.*                    -> norm.*
    cls_token, pos_embed      -> cls_token, patch_embedding.position_embeddings (see below)
    blocks.i.ls1/ls2.gamma    -> folded into attn.out_proj / mlp.linear2 (DINOv2's LayerScale, see below)
    head.*                    -> dropped

timm's ``pos_embed`` is ``(1, 1 + N, C)``: it has a position embedding for the class token, MONAI's ViT does not.
Both are added to the class token before the first block, so ``cls_token + pos_embed[:, :1]`` is folded into
``cls_token`` (exact) and ``pos_embed[:, 1:]`` becomes ``patch_embedding.position_embeddings``. Resampling to the
target's patch grid (another ``img_size``, or 3D) is done by ``monai_transfer.weights.surgery`` at load time.
DINOv2 (Oquab et al., 2024, arXiv:2304.07193) scales each residual branch by a learned vector (LayerScale,
``x + gamma * proj(attn(x))``); MONAI's block has no such vector, so ``gamma`` is folded into the branch's last linear
layer (``gamma * (W y + b) = (gamma W) y + gamma b``, exact). MONAI's blocks also own an unused ``norm_cross_attn`` LayerNorm that no ViT checkpoint has: it is reported as
"defaulted", not missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, matches_any, strip_prefixes

__all__ = ["map_timm_vit_key", "fold_class_position", "fold_layer_scale", "finalize_timm_vit", "TIMM_VIT"]

_RENAMES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embedding.patch_embeddings."),
    (re.compile(r"\.attn\.proj\."), ".attn.out_proj."),
    (re.compile(r"\.mlp\.fc1\."), ".mlp.linear1."),
    (re.compile(r"\.mlp\.fc2\."), ".mlp.linear2."),
)
_POS = "patch_embedding.position_embeddings"
_LAYER_SCALE = re.compile(r"^(.*blocks\.\d+)\.ls([12])\.gamma$")
_SCALED = {"1": "attn.out_proj", "2": "mlp.linear2"}  # the last linear layer of each residual branch
_PATCH = "patch_embedding.patch_embeddings.weight"


def map_timm_vit_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """timm ViT key -> MONAI ViT key (``pos_embed`` keeps its name until ``fold_class_position``)."""
    k = strip_prefixes(key)
    if matches_any(k, HEAD_PATTERNS):
        return None
    for pattern, new in _RENAMES:
        k = pattern.sub(new, k)
    return k, value


def _is_grid(n: int, dims: int) -> bool:
    g = round(n ** (1.0 / dims))
    return any(c > 0 and c**dims == n for c in (g - 1, g, g + 1))


def fold_class_position(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold timm's class-token position embedding into ``cls_token``; rename the rest to MONAI's key.

    Pure: returns a new dict. Without ``pos_embed`` the input is returned unchanged.
    """
    if "pos_embed" not in state_dict:
        return state_dict
    out = dict(state_dict)
    pos = out.pop("pos_embed")
    patch = out.get(_PATCH)
    dims = patch.dim() - 2 if patch is not None else 2
    cls = out.get("cls_token")
    n = pos.shape[1]
    if cls is not None and not _is_grid(n, dims) and _is_grid(n - 1, dims):
        out["cls_token"] = cls + pos[:, :1]
        pos = pos[:, 1:]
    out[_POS] = pos
    return out


def fold_layer_scale(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold LayerScale vectors (``blocks.i.ls1.gamma``, ``blocks.i.ls2.gamma``) into the linear layer before them.

    Pure: returns a new dict; a checkpoint without LayerScale is returned unchanged. A ``gamma`` whose linear layer is
    absent is kept (and reported as unexpected).
    """
    out = dict(state_dict)
    for key in [k for k in state_dict if _LAYER_SCALE.match(k)]:
        m = _LAYER_SCALE.match(key)
        weight, bias = f"{m[1]}.{_SCALED[m[2]]}.weight", f"{m[1]}.{_SCALED[m[2]]}.bias"
        if weight not in out:
            continue
        gamma = out.pop(key)
        out[weight] = out[weight] * gamma[:, None]
        if bias in out:
            out[bias] = out[bias] * gamma
    return out


def finalize_timm_vit(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LayerScale folded, then the class-token position folded: a timm ViT checkpoint in MONAI's terms."""
    return fold_class_position(fold_layer_scale(state_dict))


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k) for k in source}
    return 1.0 if "patch_embed.proj.weight" in keys and "blocks.0.attn.qkv.weight" in keys else 0.0


TIMM_VIT = Adapter(
    name="timm-vit",
    family="vit",
    description="timm VisionTransformer (patch_embed/blocks/norm/head, DINOv2's LayerScale folded); class position "
    "folded into cls_token",
    detect=_detect,
    map_key=map_timm_vit_key,
    finalize=finalize_timm_vit,
    reference="Dosovitskiy et al., 2021, arXiv:2010.11929; https://github.com/huggingface/pytorch-image-models",
)
