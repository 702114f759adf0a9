"""Segment Anything checkpoints (Kirillov et al., 2023, arXiv:2304.02643: ``sam_vit_b_01ec64.pth``) and MedSAM's
(Ma et al., 2024: ``medsam_vit_b.pth``), into ``monai_transfer.networks.backbones.sam_vit``.

Both files are the state dict of the whole ``Sam`` model: ``image_encoder.*`` (kept, names unchanged),
``prompt_encoder.*`` and ``mask_decoder.*`` (dropped). The position embeddings are learnt for 1024 px (a 64x64 grid, and
127-long relative tables in the global blocks); for another ``img_size`` they are resampled here, because the target's
shapes are known: ``pos_embed`` bicubically over the grid (as ViT position embeddings), the relative tables linearly
(as SAM itself does at run time).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from monai_transfer.weights.adapters.base import Adapter, KeyFn, strip_prefixes
from monai_transfer.weights.surgery import resample_position_embedding

__all__ = ["SAM_IMAGE_ENCODER"]

_ENCODER = "image_encoder."
_DROPPED = ("prompt_encoder.", "mask_decoder.", "pixel_mean", "pixel_std")


def _resample_grid(pos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(1, H, W, C)`` -> ``(1, h, w, C)``."""
    _, h, w, c = pos.shape
    flat = resample_position_embedding(pos.reshape(1, h * w, c), (h, w), size)
    return flat.reshape(1, size[0], size[1], c)


def _resample_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """``(L, d)`` -> ``(length, d)``, linearly."""
    return F.interpolate(table.t()[None], size=length, mode="linear")[0].t()


def _bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
    def map_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        k = strip_prefixes(key, ("module.", "model."))
        if k.startswith(_DROPPED):
            return None
        if k.startswith(_ENCODER):
            k = k[len(_ENCODER) :]
        dst = target.get(k)
        if dst is not None and tuple(dst.shape) != tuple(value.shape):
            if k == "pos_embed" and value.dim() == 4 and dst.dim() == 4 and value.shape[3] == dst.shape[3]:
                value = _resample_grid(value, (int(dst.shape[1]), int(dst.shape[2])))
            elif k.endswith((".rel_pos_h", ".rel_pos_w")) and value.shape[1:] == dst.shape[1:]:
                value = _resample_table(value, int(dst.shape[0]))
        return k, value

    return map_key


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k, ("module.", "model.")) for k in source}
    keys |= {k[len(_ENCODER) :] for k in keys if k.startswith(_ENCODER)}
    # above timm-vit, which would read patch_embed/blocks but not the relative tables and the neck
    return 1.1 if "blocks.0.attn.rel_pos_h" in keys and "patch_embed.proj.weight" in keys else 0.0


SAM_IMAGE_ENCODER = Adapter(
    name="sam-image-encoder",
    family="sam",
    description="Segment Anything / MedSAM: image_encoder.* kept (position tables resampled to img_size), prompt "
    "encoder and mask decoder dropped",
    detect=_detect,
    bind=_bind,
    reference="Kirillov et al., 2023, arXiv:2304.02643; https://github.com/facebookresearch/segment-anything",
)
