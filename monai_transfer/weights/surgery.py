"""Weight surgery: make pretrained tensors fit a backbone with other input channels, dimensions or grid size.

Three operations, each exact for a stated class of inputs, applied automatically by ``load_pretrained`` and usable
on their own:

* **Input-channel adaptation** (``adapt_input_channels``), for the first convolution only. Target channel ``j``
  takes the kernel of source channel ``j mod M``. With fewer target channels (``N < M``) the source kernels that fold
  onto the same target channel are *summed* (RGB -> grey: ``w_grey = w_R + w_G + w_B``); with more (``N > M``) each
  source kernel is *split equally* among the ``c_i`` target channels that copy it (divided by ``c_i``; grey -> RGB
  divides by 3). Either way the kernel summed over channels is unchanged, so an image whose channels are all equal
  (a grey image, replicated as the pretrained model expects) gives exactly the pretrained response. timm's
  ``adapt_input_conv`` follows the same idea with a uniform ``M/N`` scale.
* **2D -> 3D inflation** (``inflate_weight``), I3D style (Carreira & Zisserman, 2017, arXiv:1705.07750). A 2D
  kernel ``(O, I, kh, kw)`` becomes ``(O, I, kh, kw, kd)`` with the new depth axis last by default (MONAI's
  ``(H, W, D)`` order). ``"mean"`` repeats the kernel along depth and divides by ``kd`` (I3D's "boring video"
  bootstrap): on a volume constant along depth every slice gives the 2D response, except within ``kd // 2`` slices
  of the depth borders where zero padding enters. ``"centre"`` puts the 2D kernel in the middle slice
  (index ``kd // 2``) and zeros elsewhere: the 3D network starts as the 2D network applied slice by slice, which
  is exact everywhere for any volume at the first layer.
* **Position-embedding resampling** (``resample_position_embedding``) for ViTs, between patch grids (bicubic in 2D,
  as timm; trilinear in 3D) and from a 2D grid to a 3D one (resampled in-plane, then repeated along depth, the
  position-embedding analogue of inflation: tokens at the same in-plane position share their embedding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "INFLATE_MODES",
    "adapt_input_channels",
    "inflate_weight",
    "resample_position_embedding",
    "infer_grid",
    "inflate_state_dict",
    "first_conv_key",
    "fit_state_dict",
]

INFLATE_MODES = ("mean", "centre")


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a convolution kernel ``(O, M, *k)`` to ``in_channels`` input channels ``(O, N, *k)``.

    Target channel ``j`` draws on source channel ``j mod M``. Source kernels folding onto one target channel are
    summed (``N < M``); a source kernel copied to ``c`` target channels is divided by ``c`` (``N > M``). The sum
    of the kernel over its input channels is preserved, so images whose channels are all equal give the same
    response (RGB -> 1: sum, 1 -> 3: repeat / 3).

    Args:
        weight: convolution weight, input channels on dim 1.
        in_channels: the number of input channels wanted.

    Returns:
        A new tensor of the same dtype and device.
    """
    if weight.dim() < 3:
        raise ValueError(f"Expected a convolution weight (O, I, *kernel), got shape {tuple(weight.shape)}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}.")
    m, n = weight.shape[1], int(in_channels)
    if m == n:
        return weight.clone()
    source = torch.arange(n, device=weight.device) % m
    if n < m:
        shape = list(weight.shape)
        shape[1] = n
        out = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        for i in range(m):
            out[:, i % n] += weight[:, i]
        return out
    counts = torch.bincount(source, minlength=m).to(weight.dtype)  # c_i: how many target channels copy channel i
    scale = (1.0 / counts[source]).reshape([1, n] + [1] * (weight.dim() - 2))
    return weight[:, source] * scale


def _depth_position(axis: int, spatial_out: int) -> int:
    if not -spatial_out <= axis < spatial_out:
        raise ValueError(f"axis must index one of the {spatial_out} spatial axes of the result, got {axis}.")
    return axis % spatial_out


def inflate_weight(weight: torch.Tensor, depth: int, mode: str = "mean", axis: int = -1) -> torch.Tensor:
    """Inflate a 2D convolution kernel ``(O, I, kh, kw)`` to 3D by adding a depth axis of size ``depth``.

    Args:
        weight: a 2D convolution kernel (or any ``(O, I, *k)`` kernel, gaining one spatial axis).
        depth: the size of the new kernel axis (taken from the target module's parameter).
        mode: ``"mean"`` (repeat along depth, divide by ``depth``; I3D) or ``"centre"`` (the 2D kernel in slice
            ``depth // 2``, zeros elsewhere).
        axis: where the new axis goes among the result's spatial axes; ``-1`` (last) matches MONAI's ``(H, W, D)``.

    Returns:
        The inflated kernel ``(O, I, kh, kw, depth)`` for ``axis=-1``.
    """
    if mode not in INFLATE_MODES:
        raise ValueError(f"Inflation mode must be one of {INFLATE_MODES}, got {mode!r}.")
    if weight.dim() < 3:
        raise ValueError(f"Expected a convolution kernel (O, I, *kernel), got shape {tuple(weight.shape)}.")
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}.")
    dim = 2 + _depth_position(axis, weight.dim() - 1)
    w = weight.unsqueeze(dim)
    if mode == "mean":
        reps = [1] * w.dim()
        reps[dim] = depth
        return w.repeat(reps) / depth
    shape = list(w.shape)
    shape[dim] = depth
    out = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
    index = [slice(None)] * w.dim()
    index[dim] = slice(depth // 2, depth // 2 + 1)
    out[tuple(index)] = w
    return out


def infer_grid(num_tokens: int, spatial_dims: int) -> tuple[int, ...]:
    """The isotropic grid ``(g,) * spatial_dims`` with ``g ** spatial_dims == num_tokens``; ``ValueError`` if none."""
    g = int(round(num_tokens ** (1.0 / spatial_dims)))
    for cand in (g - 1, g, g + 1):
        if cand > 0 and cand**spatial_dims == num_tokens:
            return (cand,) * spatial_dims
    raise ValueError(
        f"{num_tokens} position embeddings do not form an isotropic {spatial_dims}D grid; "
        "call resample_position_embedding with explicit src_grid/dst_grid."
    )


def resample_position_embedding(
    pos: torch.Tensor,
    src_grid: Sequence[int],
    dst_grid: Sequence[int],
    num_prefix_tokens: int = 0,
    mode: str | None = None,
    axis: int = -1,
) -> torch.Tensor:
    """Resample ViT position embeddings ``(1, P + prod(src_grid), C)`` to ``(1, P + prod(dst_grid), C)``.

    Tokens are laid out row-major over the grid (as a convolutional patch embedding flattens them). The first
    ``num_prefix_tokens`` (class/register tokens) are kept as they are.

    Args:
        pos: the position embeddings.
        src_grid: the patch grid they were trained for, e.g. ``(14, 14)``.
        dst_grid: the patch grid wanted, 2D or 3D, e.g. ``(7, 7)`` or ``(6, 6, 6)``.
        num_prefix_tokens: leading tokens that have no grid position.
        mode: interpolation mode; default ``"bicubic"`` in 2D (with antialiasing, as timm) and ``"trilinear"`` in 3D.
        axis: for a 2D -> 3D resampling, which axis of ``dst_grid`` is the new depth axis (default last).

    Returns:
        The resampled embeddings, same dtype.
    """
    src, dst = tuple(int(s) for s in src_grid), tuple(int(s) for s in dst_grid)
    if pos.dim() != 3 or pos.shape[1] != num_prefix_tokens + math.prod(src):
        raise ValueError(
            f"Position embeddings of shape {tuple(pos.shape)} do not match {num_prefix_tokens} prefix tokens plus "
            f"a grid {src}."
        )
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    if src == dst:
        return pos.clone()
    c = grid.shape[-1]
    x = grid.float().transpose(1, 2).reshape(1, c, *src)
    if len(src) == len(dst):
        if len(src) not in (2, 3):
            raise ValueError(f"Only 2D and 3D grids are supported, got {src} -> {dst}.")
        mode = mode or ("bicubic" if len(src) == 2 else "trilinear")
        kwargs = {"antialias": True} if mode in ("bicubic", "bilinear") else {}
        x = F.interpolate(x, size=dst, mode=mode, align_corners=False, **kwargs)
    elif len(src) == 2 and len(dst) == 3:
        d = _depth_position(axis, 3)
        plane = tuple(s for i, s in enumerate(dst) if i != d)
        if plane != src:
            x = F.interpolate(x, size=plane, mode=mode or "bicubic", align_corners=False, antialias=True)
        x = x.unsqueeze(2 + d)
        reps = [1] * x.dim()
        reps[2 + d] = dst[d]
        x = x.repeat(reps)
    else:
        raise ValueError(f"Cannot resample position embeddings from grid {src} to grid {dst}.")
    out = x.reshape(1, c, -1).transpose(1, 2).to(pos.dtype)
    return torch.cat([prefix, out], dim=1)


def inflate_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    target_state_dict: Mapping[str, torch.Tensor],
    mode: str = "mean",
    axis: int = -1,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Inflate every 2D kernel of ``state_dict`` whose counterpart in ``target_state_dict`` is 3D.

    A key is inflated when the target tensor has one more dimension (at least 5: a 3D kernel) and the shapes agree
    on every other axis (input channels may still differ: channel adaptation follows). The depth of each inflated
    kernel is read from the target tensor.

    Returns:
        ``(new_state_dict, adapted)`` where ``adapted`` maps each inflated key to a description.
    """
    out = dict(state_dict)
    adapted: dict[str, str] = {}
    for key, value in state_dict.items():
        target = target_state_dict.get(key)
        if target is None or value.dim() + 1 != target.dim() or target.dim() < 5:
            continue
        d = 2 + _depth_position(axis, target.dim() - 2)
        plane = tuple(s for i, s in enumerate(target.shape) if i != d)
        if plane[0] != value.shape[0] or plane[2:] != tuple(value.shape[2:]):
            continue
        out[key] = inflate_weight(value, int(target.shape[d]), mode=mode, axis=axis)
        adapted[key] = f"inflated 2D->3D ({mode}, depth {int(target.shape[d])})"
    return out, adapted


def first_conv_key(target_state_dict: Mapping[str, torch.Tensor], spatial_dims: int | None = None) -> str | None:
    """The first convolution weight of a state dict (the stem that sees the input channels), or None."""
    for key, value in target_state_dict.items():
        if not key.endswith("weight") or not torch.is_floating_point(value) or value.dim() < 3:
            continue
        if spatial_dims is None or value.dim() == spatial_dims + 2:
            return key
    return None


def _is_position_embedding(key: str, src: torch.Tensor, dst: torch.Tensor) -> bool:
    name = key.rsplit(".", 1)[-1]
    return (
        name in ("position_embeddings", "pos_embed", "position_embedding")
        and src.dim() == 3
        and dst.dim() == 3
        and src.shape[0] == dst.shape[0] == 1
        and src.shape[2] == dst.shape[2]
    )


def fit_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    module: nn.Module,
    target_state_dict: Mapping[str, torch.Tensor] | None = None,
    inflate_mode: str = "mean",
    axis: int = -1,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Apply inflation, position-embedding resampling and input-channel adaptation where shapes call for them.

    Keys whose shapes already agree are untouched; keys that no surgery can fit are left for the load report to
    list as shape-mismatched.

    Args:
        state_dict: checkpoint tensors already renamed to the module's keys.
        module: the target module (its ``spatial_dims`` and ``grid_size`` attributes are used when present).
        target_state_dict: ``module.state_dict()``, when the caller already has it.
        inflate_mode: ``"mean"`` or ``"centre"`` (see ``inflate_weight``).
        axis: the depth axis for 2D -> 3D surgery (default last).

    Returns:
        ``(state_dict, adapted)``; ``adapted`` maps keys to what was done.
    """
    target = dict(target_state_dict if target_state_dict is not None else module.state_dict())
    spatial_dims = getattr(module, "spatial_dims", None)
    stem = first_conv_key(target, spatial_dims)
    source_stem = state_dict.get(stem) if stem is not None else None
    src_dims = source_stem.dim() - 2 if source_stem is not None else spatial_dims
    out, adapted = inflate_state_dict(state_dict, target, mode=inflate_mode, axis=axis)

    for key, value in list(out.items()):
        dst = target.get(key)
        if dst is None or tuple(value.shape) == tuple(dst.shape):
            continue
        if _is_position_embedding(key, value, dst):
            dst_dims = spatial_dims or src_dims or 2
            src_grid = infer_grid(value.shape[1], src_dims or dst_dims)
            grid_size = getattr(module, "grid_size", None)
            if grid_size is not None and math.prod(grid_size) == dst.shape[1]:
                dst_grid = tuple(int(g) for g in grid_size)
            else:
                dst_grid = infer_grid(dst.shape[1], dst_dims)
            out[key] = resample_position_embedding(value, src_grid, dst_grid, axis=axis)
            grid = "x".join(str(g) for g in src_grid) + " -> " + "x".join(str(g) for g in dst_grid)
            adapted[key] = f"position embeddings resampled {grid}"

    if stem is not None and stem in out:
        value, dst = out[stem], target[stem]
        same_rest = value.dim() == dst.dim() and value.shape[0] == dst.shape[0] and value.shape[2:] == dst.shape[2:]
        if same_rest and value.shape[1] != dst.shape[1]:
            m, n = int(value.shape[1]), int(dst.shape[1])
            out[stem] = adapt_input_channels(value, n)
            rule = "sum" if n < m else "repeat / copies"
            note = f"in_channels {m}->{n} ({rule})"
            adapted[stem] = f"{adapted[stem]}; {note}" if stem in adapted else note
    return out, adapted
