"""SSL training-step cost per method: ours, lightly's same method, and the bare backbone, in 2D and 3D.

For every (method, spatial dims) up to three configurations run on one fixed synthetic batch:

* ours      ``monai_transfer.ssl.create_method(name, create_backbone(...))`` on a fixed synthetic batch of the
            method's views (the keys of ``monai_transfer.ssl.base``), AdamW over ``method.parameter_groups``, and one
            full training step as the trainer does it: ``zero_grad``, forward, ``backward``, ``after_backward(1)``,
            ``optimizer.step()``, ``update_teacher()``.
* lightly   the same method assembled from lightly's own parts (its heads, losses, ``deactivate_requires_grad`` and
            ``update_momentum``) around THE SAME backbone class (``backbone(x)`` is ``forward_features``), with head
            sizes read from our method's defaults, the same views and batch, AdamW, and the step of lightly's
            documented example for that method (views forwarded one at a time, momentum update at the start of the
            step, DINO's ``cancel_last_layer_gradients``). "n/a" where lightly has no equivalent on the same backbone.
* baseline  the backbone alone on the same views: the student's ``forward_features`` with grad on the views the
            method feeds it (grouped into calls exactly as the method groups them, via ``forward_views``), the frozen
            teacher backbone's no-grad forward on its views for methods with a teacher, loss = sum of the features'
            means, ``backward`` and an AdamW step over the backbone. For MAE this runs the ViT on all patches, while
            MAE's encoder sees only the visible quarter, so MAE's "overhead" can be negative.

Timing (``--timing paired``, the default). Step times on a small shared CPU drift by 10-25 % between processes run
minutes apart, more than the differences this benchmark looks for, so the configurations are timed side by side:
ONE process per (method, dims) builds all of them (same seed, same backbone weights, same batch), runs ``--warmup``
untimed steps of each, then ``--repeats`` rounds; every round times one complete step of each configuration
(``time.perf_counter`` around the step, ``torch.cuda.synchronize`` before and after it on CUDA), and the order
rotates every round (ours, lightly, base / lightly, base, ours / base, ours, lightly / ...) so that no configuration
always goes first. Drift then hits the configurations of a round alike and cancels in the per-round ratios:
  ours/lightly   = median over rounds of (lightly's step time / our step time) in the same round
  ovh            = median over rounds of (our step time - baseline step time) / our step time in the same round
each printed with its interquartile range over the rounds, "1.03 [0.98, 1.07]", so the noise is in sight.
``--timing separate`` is the older way: each configuration timed in its own process, one after another (ratios of
medians, no spread); use it only to compare with earlier results.

Memory. Peak memory must be one configuration's alone, so it is measured after the timing, in a separate process per
configuration that runs ``--memory-steps`` steps (default 2: the second step is the first whose forward pass runs
with the optimizer state allocated); ``--no-memory`` skips it. With ``--timing separate`` memory comes from the
timing processes, as before.

Default inputs: ResNet-18 2D at 128x128, batch 32; ResNet-18 3D at 64x64x64, batch 4 (``--backbone3d`` to change);
MAE on ``vit_small_patch16`` built with ``img_size`` = the input size (lightly: n/a, different backbone). Views:
two views of the input size; DINO 2 global views + 4 (2D) / 2 (3D) local views of half the size; MAE / SimMIM one
``image`` and a ``mask`` with exactly round(ratio * patches) masked patches per sample (MAE 16 px / 75 %, SimMIM
32 px in 2D, 16 vox in 3D / 60 %); Models Genesis ``image_v1`` + ``image``; SwinUNETR-SSL two views, two targets
and two rotation labels.

Cost. The full default run (12 methods x 2D and 3D, 62 configurations with lightly where it has the method, each
1 warm-up + 7 timed + 2 memory steps of about 2-3 s on 2 CPU cores) takes about 25 minutes on a 2-core CPU, about
one minute per (method, dims); ``--no-memory`` saves a fifth of that. ``--quick`` takes about a minute for two
methods in 2D.

Precision (``--amp``, default ``auto``): ours runs as a pretraining run does, with the run's decision
(``monai_transfer.engines.resolve_precision``: CUDA AMP; on CPU bfloat16 autocast where the cached probe of the backbone
at the input size measures that it pays, else fp32) and ``--channels-last`` (default ``auto``, off); lightly and the
baseline stay in their default fp32, contiguous. The decision's reason is printed under the table.

Columns:
  method, dims, backbone, input  what ran (input: views x size^dims; "m48/64" = masked / total patches)
  batch          samples per view
  prec, layout   ours' precision (bf16 / fp16 / fp32) and memory layout (cf contiguous, cl channels-last)
  ours/s         our training steps per second: 1 / the median of our step times over the rounds
  lightly/s      lightly's steps per second on the same backbone, views and batch, or n/a (reason below the table)
  ours/lightly   paired speed ratio (see above) [interquartile range over rounds]: above 1 means ours is faster
  base/s         steps per second of the backbone-only baseline
  ovh%           paired method overhead in % of our step [interquartile range]: the time spent in heads, loss,
                 teacher heads, EMA update and optimizer work on head parameters
  ours MiB, lightly MiB   "growth/peak" from the memory processes ("-" with --no-memory): on CPU, growth = how far
                 the process's peak resident set size rose above its level right after building models, optimizer
                 and batch (activations, gradients, optimizer state, teacher work); peak = the absolute peak RSS of
                 the process (includes PyTorch itself; forked processes show less than fresh interpreters, so
                 compare peaks within one --isolation). On a GPU both come from torch.cuda memory statistics
                 (allocated bytes).
  target         "ok", or what missed: "slower" when ours is CLEARLY slower than lightly, i.e. the paired ratio's
                 median < 1 AND its upper quartile < 1 (a ratio whose range straddles 1 is a tie within the noise,
                 and "ok"); "ovh" when the paired overhead's median > 10 %; "?" when a configuration failed.
Each process is forked from a server that imported torch, MONAI and lightly once (``--isolation subprocess``: a
fresh interpreter each, as benchmarks/backbones.py). Threads: torch's default, left alone and printed
(``--threads`` to set; ``--quick`` uses 1, since on a small shared machine OpenMP threads waiting for each other make
a tiny step take seconds). Pairing removes slow drift, not contention from other work during a round: run the full
sizes on an otherwise idle machine.

    python benchmarks/ssl_step.py                                   # every method, 2D and 3D (~25 min on 2 cores)
    python benchmarks/ssl_step.py --methods simclr byol --dims 2 --out ssl_step.json
    python benchmarks/ssl_step.py --quick --methods simclr byol --dims 2   # smoke run, tiny sizes (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

METHODS = (
    "simclr",
    "moco_v2",
    "moco_v3",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "dino",
    "mae",
    "simmim",
    "models_genesis",
    "swin_unetr_ssl",
)

#: why lightly has no comparable implementation of a method
LIGHTLY_NA: dict[str, str] = {
    "moco_v3": "lightly has no MoCo v3 recipe (its MoCo example and loss are v2's queue)",
    "mae": "different backbone: lightly's MAE needs its own masked ViT wrapper (timm/torchvision), not our ViT",
    "simmim": "lightly's SimMIM runs on its masked ViT wrapper; ours on a CNN/Swin pyramid",
    "models_genesis": "no equivalent in lightly",
    "swin_unetr_ssl": "no equivalent in lightly",
}

#: the baseline's views: (student keys, student views forwarded one by one, teacher keys, teacher one by one).
#: "one by one" is passed to ``forward_views(separate=...)``, which the methods use themselves; ``None`` keys for DINO
#: mean every ``image_v*`` key of the batch.
BASELINE_VIEWS: dict[str, tuple[tuple[str, ...] | None, bool, tuple[str, ...], bool]] = {
    "simclr": (("image_v1", "image_v2"), False, (), False),
    "moco_v2": (("image_v1",), True, ("image_v2",), True),
    "moco_v3": (("image_v1", "image_v2"), True, ("image_v1", "image_v2"), True),
    "byol": (("image_v1", "image_v2"), True, ("image_v1", "image_v2"), True),
    "simsiam": (("image_v1", "image_v2"), True, (), False),
    "barlow_twins": (("image_v1", "image_v2"), True, (), False),
    "vicreg": (("image_v1", "image_v2"), True, (), False),
    "dino": (None, False, ("image_v1", "image_v2"), False),
    "mae": (("image",), True, (), False),
    "simmim": (("image",), True, (), False),
    "models_genesis": (("image_v1",), True, (), False),
    "swin_unetr_ssl": (("image_v1", "image_v2"), True, (), False),
}

#: mask patch size (2D, 3D) and ratio of the masked methods, as ``monai_transfer.ssl.views``
MASKS = {"mae": ((16, 16), 0.75), "simmim": ((32, 16), 0.6)}
#: DINO local crops per dims, as ``monai_transfer.ssl.views`` (half the global size)
DINO_LOCAL = {2: 4, 3: 2}
#: decoders with instance norm need a deepest map of more than one voxel: 2 x the ResNet's stride 32
MIN_SIZE = {"models_genesis": 64, "swin_unetr_ssl": 64}

LR, WEIGHT_DECAY = 1e-4, 1e-5
QUICK = {"size2d": 64, "size3d": 32, "batch2d": 4, "batch3d": 2, "warmup": 1, "repeats": 3, "threads": 1}
PRELOAD = ["torch", "monai.networks.nets", "monai_transfer.networks", "lightly.loss", "lightly.models.modules"]


# -- memory ------------------------------------------------------------------------------------------------------------
def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
        return int(m.group(1)) / 1024.0 if m else None
    except OSError:
        return None


class _PeakMemory:
    """Peak memory since ``start()``: the RSS high-water mark (reset through ``/proc/self/clear_refs`` where Linux
    allows it, else the lifetime ``ru_maxrss``) on CPU, the allocator's peak on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.base = 0.0

    def start(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        self.base = _status_mib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def peak(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        hwm = _status_mib("VmHWM")
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- the synthetic batch -----------------------------------------------------------------------------------------------
def _patch_mask(batch: int, grid: tuple[int, ...], ratio: float, g: Any) -> Any:
    import torch

    n = 1
    for s in grid:
        n *= s
    k = int(round(ratio * n))
    mask = torch.zeros(batch, n)
    for i in range(batch):
        mask[i, torch.randperm(n, generator=g)[:k]] = 1.0
    return mask.view(batch, 1, *grid)


def make_batch(method: str, dims: int, size: int, batch: int, seed: int = 1) -> tuple[dict, str]:
    """The method's batch dict (keys of ``monai_transfer.ssl.base``) and a short description of its input."""
    import torch

    g = torch.Generator().manual_seed(seed)
    roi = [size] * dims

    def img(shape: list[int] = roi) -> torch.Tensor:
        return torch.randn(batch, 1, *shape, generator=g)

    sz = f"{size}^{dims}"
    if method in ("mae", "simmim"):
        (p2, p3), ratio = MASKS[method]
        patch = p2 if dims == 2 else p3
        if size % patch:
            raise ValueError(f"{method}: size {size} is not divisible by the mask patch size {patch}.")
        grid = tuple([size // patch] * dims)
        mask = _patch_mask(batch, grid, ratio, g)
        n = mask[0].numel()
        return {"image": img(), "mask": mask}, f"{sz} m{int(mask[0].sum())}/{n}"
    if method == "models_genesis":
        return {
            "image_v1": torch.rand(batch, 1, *roi, generator=g),
            "image": torch.rand(batch, 1, *roi, generator=g),
        }, (f"{sz}+target")
    if method == "swin_unetr_ssl":
        out = {k: img() for k in ("image_v1", "image_v2", "target_v1", "target_v2")}
        out.update({k: torch.randint(0, 4, (batch,), generator=g) for k in ("rot_v1", "rot_v2")})
        return out, f"2x{sz}+tgt,rot"
    out = {"image_v1": img(), "image_v2": img()}
    if method == "dino":
        n_local, local = DINO_LOCAL[dims], max(1, size // 2)
        for i in range(n_local):
            out[f"image_v{3 + i}"] = img([local] * dims)
        return out, f"2x{sz}+{n_local}x{local}^{dims}"
    return out, f"2x{sz}"


def _view_keys(batch: dict) -> list[str]:
    keys = [k for k in batch if re.fullmatch(r"image_v\d+", k)]
    return sorted(keys, key=lambda k: int(k[len("image_v") :]))


# -- models ------------------------------------------------------------------------------------------------------------
def backbone_spec(method: str, dims: int, cfg: dict) -> tuple[str, dict]:
    """Registry name and keyword arguments of the backbone a method runs on."""
    if method == "mae":
        return cfg["mae_backbone"], {"img_size": cfg["size"]}
    if method == "swin_unetr_ssl" and cfg.get("swin_ssl_backbone"):
        return cfg["swin_ssl_backbone"], {}
    return (cfg["backbone2d"] if dims == 2 else cfg["backbone3d"]), {}


def _linears(module: Any) -> list[Any]:
    import torch

    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _has_bn(module: Any) -> bool:
    import torch

    return any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())


def our_head_sizes(method: str, backbone_name: str, dims: int, kwargs: dict) -> dict:
    """Head sizes, loss settings and momentum of our method with its defaults, read from a copy built on the meta
    device (no memory)."""
    import torch

    from monai_transfer.networks import create_backbone
    from monai_transfer.ssl import create_method

    with torch.device("meta"):
        ours = create_method(method, create_backbone(backbone_name, dims, in_channels=1, **kwargs))

    def mlp(head: Any) -> dict:
        lin = _linears(head)
        return {
            "in": lin[0].in_features,
            "hidden": lin[0].out_features,
            "out": lin[-1].out_features,
            "layers": len(lin),
            "bn": _has_bn(head),
        }

    h: dict[str, Any] = {"momentum": float(getattr(ours, "teacher_momentum", 0.99))}
    if method == "dino":
        mlp_lin = _linears(ours.head.mlp)
        h["head"] = {
            "in": mlp_lin[0].in_features,
            "hidden": mlp_lin[0].out_features,
            "bottleneck": mlp_lin[-1].out_features,
            "out": ours.head.out_dim,
            "bn": _has_bn(ours.head.mlp),
            "norm_last_layer": bool(ours.head.norm_last_layer),
        }
        h["teacher_temp"] = float(ours.teacher_temperature)
        h["student_temp"] = float(ours.criterion.student_temp)
        h["center_momentum"] = float(ours.criterion.center_momentum)
        return h
    h["projector"] = mlp(ours.projector)
    if hasattr(ours, "predictor"):
        h["predictor"] = mlp(ours.predictor)
    crit = ours.criterion
    for attr in ("temperature", "queue_size", "lambda_param", "mu_param", "nu_param"):
        if hasattr(crit, attr):
            h[attr] = getattr(crit, attr)
    return h


def build_lightly(method: str, backbone: Any, h: dict) -> tuple[Any, Any, Any]:
    """(model, criterion, step(batch, optimizer)) for lightly's implementation of ``method``, after its examples
    (https://docs.lightly.ai/self-supervised-learning/examples/models.html)."""
    import copy

    import torch
    from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
    from lightly.models.modules import (
        BarlowTwinsProjectionHead,
        BYOLPredictionHead,
        BYOLProjectionHead,
        DINOProjectionHead,
        MoCoProjectionHead,
        SimCLRProjectionHead,
        SimSiamPredictionHead,
        SimSiamProjectionHead,
    )
    from lightly.models.modules.heads import VICRegProjectionHead  # not re-exported by lightly.models.modules
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from torch import nn

    p, q = h.get("projector"), h.get("predictor")
    m = h["momentum"]

    if method == "simclr":

        class SimCLR(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.backbone = backbone
                self.projection_head = SimCLRProjectionHead(p["in"], p["hidden"], p["out"], p["layers"], p["bn"])

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.projection_head(self.backbone(x).flatten(start_dim=1))

        model, criterion = SimCLR(backbone), NTXentLoss(temperature=h["temperature"])

        def step(b: dict, opt: Any) -> None:
            z0 = model(b["image_v1"])
            z1 = model(b["image_v2"])
            loss = criterion(z0, z1)
            loss.backward()
            opt.step()
            opt.zero_grad()

    elif method == "moco_v2":

        class MoCo(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.backbone = backbone
                self.projection_head = MoCoProjectionHead(p["in"], p["hidden"], p["out"], p["layers"], p["bn"])
                self.backbone_momentum = copy.deepcopy(self.backbone)
                self.projection_head_momentum = copy.deepcopy(self.projection_head)
                deactivate_requires_grad(self.backbone_momentum)
                deactivate_requires_grad(self.projection_head_momentum)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.projection_head(self.backbone(x).flatten(start_dim=1))

            def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
                key = self.backbone_momentum(x).flatten(start_dim=1)
                return self.projection_head_momentum(key).detach()

        model = MoCo(backbone)
        criterion = NTXentLoss(temperature=h["temperature"], memory_bank_size=(h["queue_size"], p["out"]))

        def step(b: dict, opt: Any) -> None:
            update_momentum(model.backbone, model.backbone_momentum, m=m)
            update_momentum(model.projection_head, model.projection_head_momentum, m=m)
            query = model(b["image_v1"])
            key = model.forward_momentum(b["image_v2"])
            loss = criterion(query, key)
            loss.backward()
            opt.step()
            opt.zero_grad()

    elif method == "byol":

        class BYOL(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.backbone = backbone
                self.projection_head = BYOLProjectionHead(p["in"], p["hidden"], p["out"])
                self.prediction_head = BYOLPredictionHead(q["in"], q["hidden"], q["out"])
                self.backbone_momentum = copy.deepcopy(self.backbone)
                self.projection_head_momentum = copy.deepcopy(self.projection_head)
                deactivate_requires_grad(self.backbone_momentum)
                deactivate_requires_grad(self.projection_head_momentum)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

            def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
                y = self.backbone_momentum(x).flatten(start_dim=1)
                return self.projection_head_momentum(y).detach()

        model, criterion = BYOL(backbone), NegativeCosineSimilarity()

        def step(b: dict, opt: Any) -> None:
            update_momentum(model.backbone, model.backbone_momentum, m=m)
            update_momentum(model.projection_head, model.projection_head_momentum, m=m)
            p0 = model(b["image_v1"])
            z0 = model.forward_momentum(b["image_v1"])
            p1 = model(b["image_v2"])
            z1 = model.forward_momentum(b["image_v2"])
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            loss.backward()
            opt.step()
            opt.zero_grad()

    elif method == "simsiam":

        class SimSiam(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.backbone = backbone
                self.projection_head = SimSiamProjectionHead(p["in"], p["hidden"], p["out"])
                self.prediction_head = SimSiamPredictionHead(q["in"], q["hidden"], q["out"])

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                z = self.projection_head(self.backbone(x).flatten(start_dim=1))
                return z.detach(), self.prediction_head(z)

        model, criterion = SimSiam(backbone), NegativeCosineSimilarity()

        def step(b: dict, opt: Any) -> None:
            z0, p0 = model(b["image_v1"])
            z1, p1 = model(b["image_v2"])
            loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
            loss.backward()
            opt.step()
            opt.zero_grad()

    elif method in ("barlow_twins", "vicreg"):

        class TwoView(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.backbone = backbone
                if method == "barlow_twins":
                    self.projection_head = BarlowTwinsProjectionHead(p["in"], p["hidden"], p["out"])
                else:
                    self.projection_head = VICRegProjectionHead(p["in"], p["hidden"], p["out"], p["layers"])

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.projection_head(self.backbone(x).flatten(start_dim=1))

        model = TwoView(backbone)
        if method == "barlow_twins":
            criterion = BarlowTwinsLoss(lambda_param=h["lambda_param"])
        else:
            criterion = VICRegLoss(lambda_param=h["lambda_param"], mu_param=h["mu_param"], nu_param=h["nu_param"])

        def step(b: dict, opt: Any) -> None:
            z0 = model(b["image_v1"])
            z1 = model(b["image_v2"])
            loss = criterion(z0, z1)
            loss.backward()
            opt.step()
            opt.zero_grad()

    elif method == "dino":
        d = h["head"]

        def head(freeze: int) -> nn.Module:
            return DINOProjectionHead(
                d["in"],
                d["hidden"],
                d["bottleneck"],
                d["out"],
                d["bn"],
                freeze_last_layer=freeze,
                norm_last_layer=d["norm_last_layer"],
            )

        class DINO(nn.Module):
            def __init__(self, backbone: nn.Module) -> None:
                super().__init__()
                self.student_backbone = backbone
                self.student_head = head(freeze=1)
                self.teacher_backbone = copy.deepcopy(backbone)
                self.teacher_head = head(freeze=-1)
                deactivate_requires_grad(self.teacher_backbone)
                deactivate_requires_grad(self.teacher_head)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.student_head(self.student_backbone(x).flatten(start_dim=1))

            def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
                return self.teacher_head(self.teacher_backbone(x).flatten(start_dim=1))

        model = DINO(backbone)
        criterion = DINOLoss(
            output_dim=d["out"],
            warmup_teacher_temp=h["teacher_temp"],
            teacher_temp=h["teacher_temp"],
            warmup_teacher_temp_epochs=0,
            student_temp=h["student_temp"],
            center_momentum=h["center_momentum"],
        )

        def step(b: dict, opt: Any) -> None:
            update_momentum(model.student_backbone, model.teacher_backbone, m=m)
            update_momentum(model.student_head, model.teacher_head, m=m)
            views = [b[k] for k in _view_keys(b)]
            teacher_out = [model.forward_teacher(v) for v in views[:2]]
            student_out = [model.forward(v) for v in views]
            loss = criterion(teacher_out, student_out, teacher_temp=h["teacher_temp"])
            loss.backward()
            model.student_head.cancel_last_layer_gradients(current_epoch=0)
            opt.step()
            opt.zero_grad()

    else:
        raise ValueError(f"lightly: n/a for {method!r}: {LIGHTLY_NA.get(method, 'not assembled here')}")
    return model, criterion, step


def head_signature(model: Any, names: tuple[str, ...]) -> str:
    """``"name in-hidden-...-out bnK"`` for the heads of ``model`` among ``names`` (Linear widths, batch norms)."""
    import torch

    parts = []
    for name in names:
        head = getattr(model, name, None)
        if head is None:
            continue
        lin = _linears(head)
        if not lin:  # a convolutional head (SimMIM's): no MLP widths to compare with lightly's
            continue
        widths = [lin[0].in_features] + [m.out_features for m in lin]
        bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
        parts.append(f"{_SHORT[name]} {'-'.join(map(str, widths))}" + (f" bn{bn}" if bn else ""))
    return ", ".join(parts)


OUR_HEADS = ("projector", "predictor", "head")
LIGHTLY_HEADS = ("projection_head", "prediction_head", "student_head")
_SHORT = {"projector": "proj", "projection_head": "proj", "predictor": "pred", "prediction_head": "pred"}
_SHORT.update(head="head", student_head="head")


# -- configurations ----------------------------------------------------------------------------------------------------
def _setup(cfg: dict) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def _sync(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def build_config(method: str, impl: str, dims: int, cfg: dict, batch: dict) -> tuple[Callable[[dict], None], dict]:
    """``(run_step(batch), info)`` of one configuration on ``cfg['device']``: ``run_step`` is one complete training
    step; ``info`` names the backbone and the heads. The backbone's weights come from ``cfg['seed']``, so every
    configuration of a (method, dims) starts from the same backbone."""
    import copy

    import torch

    from monai_transfer.networks import create_backbone

    device = cfg["device"]
    name, bkw = backbone_spec(method, dims, cfg)
    heads = ""
    if impl == "lightly":
        h = our_head_sizes(method, name, dims, bkw)  # meta device: no memory, same defaults as ours
    torch.manual_seed(cfg["seed"])
    backbone = create_backbone(name, spatial_dims=dims, in_channels=1, **bkw)

    prec = {"prec": "fp32", "layout": "cf"}
    if impl == "ours":
        from monai_transfer.engines.precision import amp_dtype, prepare_network, resolve_precision
        from monai_transfer.ssl import create_method

        # the run's decision (pretraining's config: the backbone probed at the input size, cached per machine)
        decision = resolve_precision(cfg.get("amp", "auto"), device, backbone, dims, 1, cfg["size"], cfg["batch"],
                                     channels_last=cfg.get("channels_last", "auto"))  # fmt: skip
        prepare_network(backbone, decision, dims)
        dtype = amp_dtype(decision)
        prec = {"prec": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32"),
                "layout": "cl" if decision["channels_last"] else "cf", "reason": decision["reason"]}  # fmt: skip
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        model = create_method(method, backbone).to(device).train()
        heads = head_signature(model, OUR_HEADS)
        opt = torch.optim.AdamW(model.parameter_groups(WEIGHT_DECAY), lr=LR)
        hook = getattr(model, "after_backward", None)

        def run_step(b: dict) -> None:  # as SSLTrainer: forward under autocast, fp32 weights, a scaler for fp16 only
            opt.zero_grad(set_to_none=True)
            with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(b)
            if scaler is not None:
                scaler.scale(out["loss"]).backward()
                scaler.unscale_(opt)
            else:
                out["loss"].backward()
            if hook is not None:
                hook(1)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            model.update_teacher()

    elif impl == "lightly":
        model, criterion, lstep = build_lightly(method, backbone, h)
        heads = head_signature(model, LIGHTLY_HEADS)
        model = model.to(device).train()
        criterion = criterion.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

        def run_step(b: dict) -> None:
            lstep(b, opt)

    elif impl == "baseline":
        from monai_transfer.ssl.methods._common import forward_views

        model = backbone.to(device).train()
        skeys, ssep, tkeys, tsep = BASELINE_VIEWS[method]
        skeys = tuple(_view_keys(batch)) if skeys is None else skeys
        teacher = copy.deepcopy(model).requires_grad_(False) if tkeys else None
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

        def run_step(b: dict) -> None:
            opt.zero_grad(set_to_none=True)
            feats = forward_views(model.forward_features, [b[k] for k in skeys], model, separate=ssep)
            if teacher is not None:
                with torch.no_grad():
                    forward_views(teacher.forward_features, [b[k] for k in tkeys], teacher, separate=tsep)
            loss = sum(f.float().mean() for f in feats)
            loss.backward()
            opt.step()

    else:
        raise ValueError(f"unknown implementation {impl!r}")
    return run_step, {"backbone": name, "heads": heads, **prec}


def _device_batch(method: str, dims: int, cfg: dict) -> tuple[dict, str]:
    batch_cpu, input_desc = make_batch(method, dims, cfg["size"], cfg["batch"], seed=cfg["seed"] + 1)
    return {k: v.to(cfg["device"]) for k, v in batch_cpu.items()}, input_desc


def run_one(method: str, impl: str, dims: int, cfg: dict) -> dict:
    """Build one configuration alone in this process, run ``cfg['warmup'] + cfg['repeats']`` training steps, and
    return its step times and peak memory over all of them (the memory measurement, and ``--timing separate``)."""
    import torch

    _setup(cfg)
    device = cfg["device"]
    batch, input_desc = _device_batch(method, dims, cfg)
    run_step, info = build_config(method, impl, dims, cfg, batch)
    sync = _sync(device)
    mem = _PeakMemory(device)
    mem.start()
    for _ in range(cfg["warmup"]):
        run_step(dict(batch))
    sync()
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        run_step(dict(batch))
        sync()
        times.append(time.perf_counter() - t0)
    peak = mem.peak()
    median = statistics.median(times)
    return {
        "method": method,
        "impl": impl,
        "dims": dims,
        "backbone": info["backbone"],
        "input": input_desc,
        "batch": cfg["batch"],
        "heads": info["heads"],
        **{k: info[k] for k in ("prec", "layout", "reason") if k in info},
        "step_s_median": median,
        "step_s_all": times,
        "steps_per_s": 1.0 / median,
        "base_mib": mem.base,
        "peak_mib": peak,
        "peak_growth_mib": peak - mem.base,
        "memory": "cuda allocated" if device.startswith("cuda") else "process RSS",
        "device": device,
        "threads": torch.get_num_threads(),
    }


def run_child(cmd: list[str], timeout: float | None) -> tuple[str, Any]:
    """Run a ``--one`` job in a fresh interpreter: ``(kind, payload)`` from the JSON of its last stdout line, or
    ``("error", text)`` (its last stderr line, or the time-out)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "error", f"timed out after {timeout:g} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return "error", ((proc.stderr.strip().splitlines() or ["no output"])[-1])[:300]
    kind, payload = json.loads(lines[-1])
    return kind, payload


def _rotation(impls: list[str], r: int) -> list[str]:
    k = r % len(impls) if impls else 0
    return impls[k:] + impls[:k]


def run_paired(method: str, dims: int, cfg: dict) -> dict:
    """Build every configuration of ``cfg['impls']`` in this one process on the same batch, run ``cfg['warmup']``
    untimed steps of each, then ``cfg['repeats']`` rounds that time one step of each configuration, in an order that
    rotates every round. A configuration that fails to build or to step is reported in ``errors`` and left out of
    the rounds from then on; the others go on."""
    import torch

    _setup(cfg)
    device = cfg["device"]
    batch, input_desc = _device_batch(method, dims, cfg)
    sync = _sync(device)
    steps: dict[str, Callable[[dict], None]] = {}
    info: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for impl in cfg["impls"]:
        try:
            steps[impl], info[impl] = build_config(method, impl, dims, cfg, batch)
        except Exception as e:  # noqa: BLE001 - report the configuration, time the others
            errors[impl] = _error_text(e)

    def timed(impl: str) -> float | None:
        try:
            sync()
            t0 = time.perf_counter()
            steps[impl](dict(batch))  # a fresh dict per step: a method that adds keys cannot change the others' input
            sync()
            return time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001
            errors[impl] = _error_text(e)
            del steps[impl]
            return None

    for r in range(cfg["warmup"]):
        for impl in _rotation([i for i in cfg["impls"] if i in steps], r):
            timed(impl)
    rounds = []
    for r in range(cfg["repeats"]):
        order = _rotation([i for i in cfg["impls"] if i in steps], r)
        times = {}
        for impl in order:
            t = timed(impl)
            if t is not None:
                times[impl] = t
        rounds.append({"order": order, "step_s": times})
    configs = {}
    for impl in steps:  # the configurations that ran every round
        times = [rd["step_s"][impl] for rd in rounds]
        median = statistics.median(times)
        configs[impl] = {
            "method": method,
            "impl": impl,
            "dims": dims,
            "backbone": info[impl]["backbone"],
            "input": input_desc,
            "batch": cfg["batch"],
            "heads": info[impl]["heads"],
            **{k: info[impl][k] for k in ("prec", "layout", "reason") if k in info[impl]},
            "step_s_median": median,
            "step_s_all": times,
            "steps_per_s": 1.0 / median,
            "device": device,
            "threads": torch.get_num_threads(),
        }
    return {"configs": configs, "errors": errors, "rounds": rounds, "input": input_desc}


def _run(method: str, impl: str, dims: int, cfg: dict) -> dict:
    return run_paired(method, dims, cfg) if impl == "paired" else run_one(method, impl, dims, cfg)


def _child(method: str, impl: str, dims: int, cfg: dict, conn: Any) -> None:
    try:
        conn.send(("ok", _run(method, impl, dims, cfg)))
    except BaseException as e:  # noqa: BLE001 - report any failure of the configuration to the parent
        conn.send(("error", _error_text(e)))
    finally:
        conn.close()


class Runner:
    """Runs each job in its own process: forked from a server that imported torch, MONAI and lightly once
    (``forkserver``, the default: no per-process import cost), or a fresh interpreter (``subprocess``). A job is
    one configuration (``impl`` = ours / lightly / baseline) or a paired timing of several (``impl`` = "paired",
    ``cfg['impls']``), whose time limit is the per-configuration ``timeout`` times their number."""

    def __init__(self, isolation: str, timeout: float | None) -> None:
        self.isolation, self.timeout = isolation, timeout
        if isolation == "forkserver":
            import multiprocessing as mp

            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)

    def __call__(self, method: str, impl: str, dims: int, cfg: dict) -> tuple[str, Any]:
        timeout = self.timeout
        if timeout is not None and impl == "paired":
            timeout *= max(1, len(cfg["impls"]))
        if self.isolation == "subprocess":
            cmd = [sys.executable, os.path.abspath(__file__), "--one", method, impl, str(dims), json.dumps(cfg)]
            return run_child(cmd, timeout)
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child, args=(method, impl, dims, cfg, child))
        proc.start()
        child.close()
        try:
            if not parent.poll(timeout):
                proc.kill()
                proc.join()
                return "error", f"timed out after {timeout:g} s"
            kind, payload = parent.recv()
        except EOFError:
            kind, payload = "error", "the process died (out of memory?)"
        proc.join()
        if kind == "ok" and proc.exitcode not in (0, None):
            kind, payload = "error", f"exit code {proc.exitcode}"
        return kind, payload


# -- statistics and table ----------------------------------------------------------------------------------------------
def spread(values: list[float]) -> dict | None:
    """Median, interquartile range (inclusive quartiles), min, max and the values themselves; None when empty."""
    if not values:
        return None
    if len(values) == 1:
        q1 = q3 = values[0]
    else:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def _point(value: float | None) -> dict | None:
    """A single value (``--timing separate``: a ratio of medians) in the shape of ``spread``, without a range."""
    if value is None:
        return None
    return {"median": value, "q1": None, "q3": None, "min": None, "max": None, "n": 1, "values": [value]}


_COLS = [
    ("method", 15, "<"),
    ("dims", 4, ">"),
    ("backbone", 17, ">"),
    ("input", 18, ">"),
    ("batch", 5, ">"),
    ("prec", 4, ">"),
    ("layout", 6, ">"),
    ("ours/s", 7, ">"),
    ("lightly/s", 9, ">"),
    ("ours/lightly [IQR]", 18, ">"),
    ("base/s", 7, ">"),
    ("ovh% [IQR]", 20, ">"),
    ("ours MiB", 11, ">"),
    ("lightly MiB", 11, ">"),
    ("target", 10, ">"),
]


def _fmt_row(values: list[str]) -> str:
    return "".join(f"{v:{a}{w}}" if i == 0 else f" {v:{a}{w}}" for i, (v, (_, w, a)) in enumerate(zip(values, _COLS)))


def _rate(r: dict | None) -> str:
    return f"{r['steps_per_s']:.2f}" if r else "err"


def _mib(r: dict | None) -> str:
    if not r:
        return "err"
    if "peak_mib" not in r:
        return "-"
    return f"{r['peak_growth_mib']:.0f}/{r['peak_mib']:.0f}"


def _fmt_spread(s: dict | None, scale: float, digits: int) -> str:
    text = f"{scale * s['median']:.{digits}f}"
    if s["q1"] is not None:
        text += f" [{scale * s['q1']:.{digits}f}, {scale * s['q3']:.{digits}f}]"
    return text


def _verdict(row: dict) -> str:
    ours, light, base = row["ours"], row["lightly"], row["baseline"]
    if ours is None or (light is None and row["lightly_na"] is None) or base is None:
        return "?"
    misses = []
    ratio, ovh = row["ratio"], row["overhead_stats"]
    upper = None if ratio is None else (ratio["q3"] if ratio["q3"] is not None else ratio["median"])
    if ratio is not None and ratio["median"] < 1.0 and upper < 1.0:
        misses.append("slower")
    if ovh is not None and ovh["median"] > 0.10:
        misses.append("ovh")
    return ",".join(misses) or "ok"


def summarise_paired(method: str, dims: int, timing: tuple[str, Any], impls: list[str], na: str | None) -> dict:
    """The table row of one (method, dims) from its paired timing: per-configuration medians, and the ratio and
    overhead as medians over rounds of the per-round paired quantities."""
    row: dict[str, Any] = {"method": method, "dims": dims, "lightly_na": na, "errors": {}, "memory_errors": {}}
    rounds: list[dict] = []
    configs: dict[str, dict] = {}
    if timing[0] == "ok":
        configs, rounds = timing[1]["configs"], timing[1]["rounds"]
        row["errors"].update(timing[1]["errors"])
    else:
        row["errors"].update({impl: timing[1] for impl in impls})
    for impl in ("ours", "lightly", "baseline"):
        row[impl] = configs.get(impl)
    ratios = [
        rd["step_s"]["lightly"] / rd["step_s"]["ours"]
        for rd in rounds
        if row["ours"] and row["lightly"] and "ours" in rd["step_s"] and "lightly" in rd["step_s"]
    ]
    overheads = [
        (rd["step_s"]["ours"] - rd["step_s"]["baseline"]) / rd["step_s"]["ours"]
        for rd in rounds
        if row["ours"] and row["baseline"] and "ours" in rd["step_s"] and "baseline" in rd["step_s"]
    ]
    row["ratio"], row["overhead_stats"] = spread(ratios), spread(overheads)
    row["rounds"] = rounds
    return row


def summarise_separate(method: str, dims: int, res: dict[str, tuple[str, Any]], na: str | None) -> dict:
    """The table row of one (method, dims) from configurations timed in separate processes (ratios of medians)."""
    get = {k: (v[1] if v[0] == "ok" else None) for k, v in res.items()}
    ours, light, base = get.get("ours"), get.get("lightly"), get.get("baseline")
    row: dict[str, Any] = {"method": method, "dims": dims, "ours": ours, "lightly": light, "baseline": base}
    row["errors"] = {k: v[1] for k, v in res.items() if v[0] == "error"}
    row["memory_errors"] = {}
    row["lightly_na"] = na
    row["ratio"] = _point(ours["steps_per_s"] / light["steps_per_s"] if ours and light else None)
    ovh = (ours["step_s_median"] - base["step_s_median"]) / ours["step_s_median"] if ours and base else None
    row["overhead_stats"] = _point(ovh)
    return row


def finish_row(row: dict) -> dict:
    """Fill in the row's verdict, the plain ratio / overhead (medians) and what ran."""
    row["ratio_ours_over_lightly"] = row["ratio"]["median"] if row["ratio"] else None
    row["overhead"] = row["overhead_stats"]["median"] if row["overhead_stats"] else None
    row["target"] = _verdict(row)
    ref = row["ours"] or row["lightly"] or row["baseline"] or {}
    row.update({k: ref.get(k, "?") for k in ("backbone", "input", "batch")})
    return row


def print_row(row: dict) -> None:
    ours, light, base = row["ours"], row["lightly"], row["baseline"]
    ratio, ovh = row["ratio"], row["overhead_stats"]
    values = [
        row["method"],
        str(row["dims"]),
        str(row["backbone"]),
        str(row["input"]),
        str(row["batch"]),
        (ours or {}).get("prec", "?"),
        (ours or {}).get("layout", "?"),
        _rate(ours),
        "n/a" if row["lightly_na"] else _rate(light),
        _fmt_spread(ratio, 1.0, 2) if ratio is not None else ("n/a" if row["lightly_na"] else "-"),
        _rate(base),
        _fmt_spread(ovh, 100.0, 1) if ovh is not None else "-",
        _mib(ours),
        "n/a" if row["lightly_na"] else _mib(light),
        row["target"],
    ]
    print(_fmt_row(values), flush=True)


# -- main --------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        metavar="METHOD",
        help=f"methods to run (default: all): {', '.join(METHODS)}",
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--batch2d", type=int, default=None, help="batch per view in 2D (default 32)")
    parser.add_argument("--batch3d", type=int, default=None, help="batch per view in 3D (default 4)")
    parser.add_argument("--size2d", type=int, default=None, help="2D input size (default 128)")
    parser.add_argument("--size3d", type=int, default=None, help="3D input size (default 64)")
    parser.add_argument("--backbone2d", default="resnet18", help="2D backbone of the CNN methods (default resnet18)")
    parser.add_argument("--backbone3d", default="resnet18", help="3D backbone of the CNN methods (default resnet18)")
    parser.add_argument("--mae-backbone", default="vit_small_patch16", help="MAE's ViT (built with img_size=size)")
    parser.add_argument(
        "--swin-ssl-backbone",
        default=None,
        help="backbone of swin_unetr_ssl (default: the CNN backbone; e.g. swin_unetr)",
    )
    parser.add_argument(
        "--timing",
        choices=["paired", "separate"],
        default="paired",
        help="paired (default): all configurations of a (method, dims) in one process, timed in rounds of one "
        "step each in a rotating order; ratio and overhead are medians of the per-round paired values, with "
        "their interquartile range. separate: one process per configuration timed on its own, one after "
        "another (ratios of medians; drifts between processes; for comparison with earlier results)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps of each configuration before timing (default 1; --timing separate: 2)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="paired: timed rounds, one step of each configuration per round (default 7: the full default run "
        "takes about 25 min on 2 CPU cores, about 1 min per (method, dims)); separate: timed steps per "
        "configuration (default 5)",
    )
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=2,
        help="steps of the per-configuration memory process after the paired timing (default 2); its peak "
        "covers all of them",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the per-configuration memory processes of the paired timing (MiB columns show '-')",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--amp",
        choices=["auto", "on", "off"],
        default="auto",
        help="ours' precision (default auto: the run's decision, monai_transfer.engines.resolve_precision; on CPU a "
        "cached probe picks bfloat16 where it pays); lightly and the baseline stay fp32",
    )
    parser.add_argument(
        "--channels-last", choices=["auto", "on", "off"], default="auto", help="ours' memory layout (default auto)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads in every process (default: torch's default, left alone; "
        "--quick: 1, because on a small shared machine OpenMP threads that wait for each other "
        "make a tiny step take seconds)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2D 64^2 batch 4, 3D 32^3 batch 2, 1 warm-up + 3 timed rounds, 1 thread "
        "(Models Genesis / SwinUNETR-SSL at least 64); numbers are not meaningful",
    )
    parser.add_argument(
        "--isolation",
        choices=["forkserver", "subprocess"],
        default="forkserver",
        help="how each process is started: forked from a server that imported the libraries once (default), "
        "or a fresh interpreter per process (slower to start)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per configuration (a paired process gets this times its number of configurations; "
        "default: none)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="also write the rows (with every round's step times and order) and settings to this JSON file",
    )
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "IMPL", "DIMS", "CFG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        method, impl, dims, cfg = args.one
        try:
            result = ["ok", _run(method, impl, int(dims), json.loads(cfg))]
        except Exception as e:  # noqa: BLE001
            result = ["error", _error_text(e)]
        print(json.dumps(result))
        return

    paired = args.timing == "paired"
    defaults = {
        "size2d": 128,
        "size3d": 64,
        "batch2d": 32,
        "batch3d": 4,
        "warmup": 1 if paired else 2,
        "repeats": 7 if paired else 5,
        "threads": None,
    }
    base = QUICK if args.quick else defaults
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    if opts["repeats"] < 1 or opts["warmup"] < 0 or args.memory_steps < 1:
        parser.error("--repeats and --memory-steps must be at least 1, --warmup at least 0")
    memory = not (paired and args.no_memory)

    import torch

    threads = opts["threads"] or torch.get_num_threads()
    try:
        import lightly

        lightly_version = lightly.__version__
    except ImportError:
        lightly_version = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    load_text = "/".join(f"{x:.1f}" for x in load) if load else "?"
    print(
        f"device={args.device} torch={torch.__version__} lightly={lightly_version} threads={threads} "
        f"({'set' if opts['threads'] else 'torch default'}) cpus={os.cpu_count()} load={load_text}"
    )
    if paired:
        how = (
            f"paired: one process per (method, dims), {opts['warmup']} warm-up step(s) of each configuration, then "
            f"{opts['repeats']} rounds of one step each in rotating order; ratio and ovh = median over rounds "
            "[interquartile range]; "
            + (f"memory: one process per configuration, {args.memory_steps} step(s)" if memory else "no memory")
        )
    else:
        how = f"separate: one process per configuration, median of {opts['repeats']} step(s) after {opts['warmup']}"
    print(
        f"{how}; 2D {opts['size2d']}^2 batch {opts['batch2d']}, 3D {opts['size3d']}^3 batch {opts['batch3d']}; "
        f"AdamW lr={LR} wd={WEIGHT_DECAY}; ours amp={args.amp} channels_last={args.channels_last}, lightly and "
        f"baseline fp32; {args.isolation}" + ("; QUICK (smoke run)" if args.quick else "")
    )
    header = _fmt_row([c[0] for c in _COLS])
    print(header)
    print("-" * len(header), flush=True)

    runner = Runner(args.isolation, args.timeout)
    rows = []
    for method in args.methods:
        for dims in args.dims:
            size = opts["size2d"] if dims == 2 else opts["size3d"]
            if args.quick:
                size = max(size, MIN_SIZE.get(method, 0))
            cfg = {
                "size": size,
                "batch": opts["batch2d"] if dims == 2 else opts["batch3d"],
                "warmup": opts["warmup"],
                "repeats": opts["repeats"],
                "device": args.device,
                "seed": args.seed,
                "threads": opts["threads"],
                "backbone2d": args.backbone2d,
                "backbone3d": args.backbone3d,
                "mae_backbone": args.mae_backbone,
                "swin_ssl_backbone": args.swin_ssl_backbone,
                "amp": args.amp,
                "channels_last": args.channels_last,
            }
            na = None
            if method in LIGHTLY_NA or lightly_version is None:
                na = LIGHTLY_NA.get(method, "lightly is not installed")
            impls = [i for i in ("ours", "lightly", "baseline") if not (i == "lightly" and na)]
            if paired:
                timing = runner(method, "paired", dims, {**cfg, "impls": impls})
                row = summarise_paired(method, dims, timing, impls, na)
                if memory:
                    mem_cfg = {**cfg, "warmup": args.memory_steps - 1, "repeats": 1}
                    for impl in impls:
                        if row[impl] is None:
                            continue
                        kind, res = runner(method, impl, dims, mem_cfg)
                        if kind != "ok":
                            row["memory_errors"][impl] = res
                            continue
                        for key in ("base_mib", "peak_mib", "peak_growth_mib", "memory"):
                            row[impl][key] = res[key]
                        row[impl]["memory_run_step_s"] = res["step_s_all"]
            else:
                res = {
                    impl: runner(method, impl, dims, cfg) for impl in ("baseline", "ours", "lightly") if impl in impls
                }
                row = summarise_separate(method, dims, res, na)
            finish_row(row)
            row["config"] = cfg
            rows.append(row)
            print_row(row)

    notes = []
    for row in rows:
        tag = f"{row['method']} {row['dims']}D"
        for impl, err in row["errors"].items():
            notes.append(f"  {tag} {impl} failed: {err}")
        for impl, err in row["memory_errors"].items():
            notes.append(f"  {tag} {impl} memory run failed: {err}")
        if row["ours"] and row["ours"].get("reason"):
            notes.append(f"  {tag} ours' precision: {row['ours']['reason']}")
        if row["lightly"] and row["lightly"].get("heads"):
            ours_heads = (row["ours"] or {}).get("heads", "?")
            same = " (same)" if ours_heads == row["lightly"]["heads"] else f"; ours: {ours_heads}"
            notes.append(f"  {tag} heads, lightly: {row['lightly']['heads']}{same}")
    for method in dict.fromkeys(r["method"] for r in rows):
        if method in LIGHTLY_NA:
            notes.append(f"  {method}: lightly n/a: {LIGHTLY_NA[method]}")
    if "mae" in args.methods:
        notes.append(
            "  mae: baseline runs the ViT on all patches, MAE's encoder only on the visible 25 %: its ovh% "
            "compares MAE's whole step with a full-image ViT step and can be negative"
        )
    if notes:
        print("notes:")
        print("\n".join(notes))
    if args.out:
        meta = {
            "device": args.device,
            "torch": torch.__version__,
            "lightly": lightly_version,
            "threads": threads,
            "cpus": os.cpu_count(),
            "load": load,
            "quick": args.quick,
            "isolation": args.isolation,
            "timing": args.timing,
            "memory_steps": args.memory_steps if memory and paired else None,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            **opts,
        }
        with open(args.out, "w") as f:
            json.dump({"settings": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
