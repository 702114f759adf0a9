"""MAE: masked autoencoders (He, Chen, Xie, Li, Dollar and Girshick, "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, arXiv:2111.06377), for 2D and 3D ViT backbones.

The encoder sees the visible patches only; a light decoder fills in mask tokens and predicts the pixels of every
patch; the loss is the mean squared error over the masked patches, on per-patch normalised pixels by default.

The mask comes with the batch (``mask``, ``(B, 1, *grid)``, 1 = masked), so all randomness lives in the data pipeline
and a resumed run replays exactly the same masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from monai_transfer.networks.base import check_spatial_dims
from monai_transfer.ssl.base import SSLMethod
from monai_transfer.ssl.reconstruction_heads import MAEDecoder, check_mask

__all__ = ["MAE", "patchify", "unpatchify"]


def patchify(image: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """``(B, C, *roi)`` -> ``(B, N, prod(patch_size) * C)``; patches in row-major grid order (the order of the ViT's
    patch tokens), values in ``(*patch, C)`` order within a patch, as MAE."""
    b, c = image.shape[:2]
    d = len(patch_size)
    grid = [s // p for s, p in zip(image.shape[2:], patch_size)]
    shape = [b, c]
    for g, p in zip(grid, patch_size):
        shape += [g, p]
    x = image.reshape(shape)
    # (B, C, g1, p1, g2, p2, ...) -> (B, g1, g2, ..., p1, p2, ..., C)
    perm = [0] + [2 + 2 * i for i in range(d)] + [3 + 2 * i for i in range(d)] + [1]
    return x.permute(perm).reshape(b, -1, math.prod(patch_size) * c)


def unpatchify(patches: torch.Tensor, patch_size: Sequence[int], grid_size: Sequence[int]) -> torch.Tensor:
    """Inverse of ``patchify``: ``(B, N, prod(patch_size) * C)`` -> ``(B, C, *(grid_size * patch_size))``."""
    b = patches.shape[0]
    d = len(patch_size)
    c = patches.shape[-1] // math.prod(patch_size)
    x = patches.reshape([b, *grid_size, *patch_size, c])
    perm = [0, 2 * d + 1]
    for i in range(d):
        perm += [1 + i, 1 + d + i]
    return x.permute(perm).reshape([b, c] + [g * p for g, p in zip(grid_size, patch_size)])


class MAE(SSLMethod):
    """Masked autoencoder pretraining of a ``ViTBackbone``.

    Batch keys: ``image`` ``(B, C, *img_size)`` and ``mask`` ``(B, 1, *grid_size)`` (1 = masked patch), where the
    mask grid is the ViT's patch grid and every sample masks the same number of patches (75 % in the paper).

    Args:
        backbone: a ``ViTBackbone`` (``patch_embedding``, ``blocks``, ``norm``, ``img_size``, ``patch_size``,
            ``grid_size``). The exported encoder is this backbone, unchanged.
        decoder_dim, decoder_depth, decoder_num_heads: the decoder (paper: 512, 8, 16).
        decoder_mlp_ratio: decoder MLP width over ``decoder_dim``.
        decoder_pos_embed: ``"sincos"`` (fixed, as the paper) or ``"learnable"``.
        norm_pix_loss: regress per-patch normalised pixels (mean 0, variance 1 over the patch), the paper's default.
        norm_pix_eps: added to the patch variance.

    ``forward`` returns ``{"loss", "reconstruction"}`` (the masked-patch MSE, detached).

    Note:
        The encoder's position embeddings are the backbone's own (learnable by default; build the backbone with
        ``pos_embed_type="sincos"`` for the paper's fixed ones); they are added by the patch embedding, before
        masked tokens are dropped, so every visible token keeps its position.
    """

    method_name = "mae"

    def __init__(
        self,
        backbone: nn.Module,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        decoder_mlp_ratio: float = 4.0,
        decoder_pos_embed: str = "sincos",
        norm_pix_loss: bool = True,
        norm_pix_eps: float = 1e-6,
    ) -> None:
        for attr in ("img_size", "patch_size", "grid_size", "patch_embedding", "blocks", "norm", "num_features"):
            if not hasattr(backbone, attr):
                raise ValueError(
                    f"MAE needs a ViT backbone (create_backbone('vit_small_patch16', img_size=...)); "
                    f"{type(backbone).__name__} has no {attr!r}. MAE drops masked patch tokens before the encoder, "
                    "which a CNN or Swin encoder cannot do: use 'simmim' for those."
                )
        super().__init__(backbone)
        check_spatial_dims("MAE", int(backbone.spatial_dims))
        self.view_keys = ("image", "mask")
        self.spatial_dims = int(backbone.spatial_dims)
        self.img_size = tuple(int(s) for s in backbone.img_size)
        self.patch_size = tuple(int(p) for p in backbone.patch_size)
        self.grid_size = tuple(int(g) for g in backbone.grid_size)
        self.in_channels = int(backbone.in_channels)
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 0))
        self.norm_pix_loss = bool(norm_pix_loss)
        self.norm_pix_eps = float(norm_pix_eps)
        self.decoder = MAEDecoder(
            self.spatial_dims,
            self.grid_size,
            in_dim=int(backbone.num_features),
            out_dim=math.prod(self.patch_size) * self.in_channels,
            decoder_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            mlp_ratio=decoder_mlp_ratio,
            num_prefix_tokens=self.num_prefix_tokens,
            pos_embed=decoder_pos_embed,
        )

    # -- parts ---------------------------------------------------------------------------------------------------
    def _flat_mask(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Check the inputs; return the mask ``(B, N)`` (bool, grid order) and the number of masked patches."""
        if tuple(image.shape[2:]) != self.img_size or image.shape[1] != self.in_channels:
            raise ValueError(
                f"MAE was built for images (B, {self.in_channels}, *{list(self.img_size)}) (the ViT's img_size), "
                f"got {tuple(image.shape)}."
            )
        check_mask(mask, image, "MAE")
        if tuple(mask.shape[2:]) != self.grid_size:
            raise ValueError(
                f"MAE needs the mask grid to equal the ViT patch grid {list(self.grid_size)} (img_size "
                f"{list(self.img_size)} / patch_size {list(self.patch_size)}), got mask grid {list(mask.shape[2:])}: "
                f"set the masking transform's mask_patch_size to the ViT patch size {list(self.patch_size)}."
            )
        flat = mask.flatten(1) > 0.5
        counts = flat.sum(dim=1)
        if bool((counts != counts[0]).any()):
            raise ValueError(f"MAE needs the same number of masked patches in every sample, got {counts.tolist()}.")
        n_masked = int(counts[0])
        if n_masked in (0, flat.shape[1]):
            raise ValueError(
                f"MAE needs some masked and some visible patches, got {n_masked} of {flat.shape[1]} masked."
            )
        return flat, n_masked

    def encode_visible(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the ViT on the visible patches only.

        Returns:
            the normalised encoder tokens ``(B, prefix + n_visible, D)`` and ``ids_restore`` ``(B, N)`` (position of
            each grid patch in the ``[visible..., masked...]`` order).
        """
        flat, n_masked = self._flat_mask(image, mask)
        vit = self.backbone
        tokens = vit.patch_embedding(image)  # (B, N, D), position embeddings already added
        # stable sort puts visible patches (0) first, each group in grid order
        ids_shuffle = torch.argsort(flat.to(torch.uint8), dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        keep = ids_shuffle[:, : flat.shape[1] - n_masked]
        x = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        if self.num_prefix_tokens:
            x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in vit.blocks:
            x = blk(x)
        return vit.norm(x), ids_restore

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted patches ``(B, N, prod(patch_size) * C)`` in grid order (see ``unpatchify``)."""
        tokens, ids_restore = self.encode_visible(image, mask)
        return self.decoder(tokens, ids_restore)

    def reconstruction_loss(self, pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the masked patches only (per-patch normalised targets if ``norm_pix_loss``).

        Args:
            pred: ``(B, N, prod(patch_size) * C)`` from ``predict``.
            image: the target image ``(B, C, *img_size)``.
            mask: ``(B, 1, *grid_size)``, 1 = masked.
        """
        target = patchify(image, self.patch_size).float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + self.norm_pix_eps).sqrt()
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # (B, N)
        m = (mask.flatten(1) > 0.5).to(per_patch.dtype)
        return (per_patch * m).sum() / m.sum()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        image, mask = batch["image"], batch["mask"]
        loss = self.reconstruction_loss(self.predict(image, mask), image, mask)
        return {"loss": loss, "reconstruction": loss.detach()}
