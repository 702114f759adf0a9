"""SSL training-step cost per method: ours, lightly's same method, and the bare backbone, in 2D and 3D.

For every (method, spatial dims) three configurations are timed, each in its own process, so that peak memory is
that configuration's alone:

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

Default inputs: ResNet-18 2D at 128x128, batch 32; ResNet-18 3D at 64x64x64, batch 4 (``--backbone3d`` to change);
MAE on ``vit_small_patch16`` built with ``img_size`` = the input size (lightly: n/a, different backbone). Views:
two views of the input size; DINO 2 global views + 4 (2D) / 2 (3D) local views of half the size; MAE / SimMIM one
``image`` and a ``mask`` with exactly round(ratio * patches) masked patches per sample (MAE 16 px / 75 %, SimMIM
32 px in 2D, 16 vox in 3D / 60 %); Models Genesis ``image_v1`` + ``image``; SwinUNETR-SSL two views, two targets
and two rotation labels.

Columns:
  method, dims, backbone, input  what ran (input: views x size^dims; "m48/64" = masked / total patches)
  batch          samples per view
  ours/s         our training steps per second (median step time over --repeats steps after --warmup steps)
  lightly/s      lightly's steps per second on the same backbone, views and batch, or n/a (reason below the table)
  ours/lightly   speed ratio (ours/s / lightly/s): above 1 means ours is faster
  base/s         steps per second of the backbone-only baseline
  ovh%           method overhead = (our step time - baseline step time) / our step time: the time spent in heads,
                 loss, teacher heads, EMA update and optimizer work on head parameters
  ours MiB, lightly MiB   "growth/peak": on CPU, growth = how far the process's peak resident set size rose above
                 its level right after building models, optimizer and batch (activations, gradients, optimizer
                 state, teacher work); peak = the absolute peak RSS of the process (includes PyTorch itself; forked
                 processes show less than fresh interpreters, so compare peaks within one --isolation). On a GPU
                 both come from torch.cuda memory statistics (allocated bytes).
  target         "ok" when ours/lightly >= 1 (or lightly n/a) and ovh% < 10, else what missed ("slower", "ovh")
Each configuration runs in a process forked from a server that imported torch, MONAI and lightly once
(``--isolation subprocess``: a fresh interpreter each, as benchmarks/backbones.py). Threads: torch's default, left
alone and printed (``--threads`` to set; ``--quick`` uses 1, since on a small shared machine OpenMP threads waiting
for each other make a tiny step take seconds). Timings on a shared machine are noisy: compare ratios near 1 over
several runs, and run the full sizes on a quiet machine.

    python benchmarks/ssl_step.py                                   # every method, 2D and 3D (slow on CPU)
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
QUICK = {"size2d": 64, "size3d": 32, "batch2d": 4, "batch3d": 2, "warmup": 1, "repeats": 2, "threads": 1}
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
        widths = [lin[0].in_features] + [m.out_features for m in lin]
        bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
        parts.append(f"{_SHORT[name]} {'-'.join(map(str, widths))}" + (f" bn{bn}" if bn else ""))
    return ", ".join(parts)


OUR_HEADS = ("projector", "predictor", "head")
LIGHTLY_HEADS = ("projection_head", "prediction_head", "student_head")
_SHORT = {"projector": "proj", "projection_head": "proj", "predictor": "pred", "prediction_head": "pred"}
_SHORT.update(head="head", student_head="head")


# -- one configuration -------------------------------------------------------------------------------------------------
def run_one(method: str, impl: str, dims: int, cfg: dict) -> dict:
    """Build one configuration, time ``cfg['warmup'] + cfg['repeats']`` training steps, return its row."""
    import copy
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    device = cfg["device"]
    size = cfg["size"]
    name, bkw = backbone_spec(method, dims, cfg)
    from monai_transfer.networks import create_backbone

    torch.manual_seed(cfg["seed"])
    batch_cpu, input_desc = make_batch(method, dims, size, cfg["batch"], seed=cfg["seed"] + 1)
    heads = ""
    if impl == "lightly":
        h = our_head_sizes(method, name, dims, bkw)  # meta device: no memory, same defaults as ours
        torch.manual_seed(cfg["seed"])
    backbone = create_backbone(name, spatial_dims=dims, in_channels=1, **bkw)

    if impl == "ours":
        from monai_transfer.ssl import create_method

        model = create_method(method, backbone).to(device).train()
        heads = head_signature(model, OUR_HEADS)
        opt = torch.optim.AdamW(model.parameter_groups(WEIGHT_DECAY), lr=LR)
        hook = getattr(model, "after_backward", None)

        def run_step(b: dict) -> None:
            opt.zero_grad(set_to_none=True)
            out = model(b)
            out["loss"].backward()
            if hook is not None:
                hook(1)
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
        skeys = tuple(_view_keys(batch_cpu)) if skeys is None else skeys
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

    batch = {k: v.to(device) for k, v in batch_cpu.items()}
    del batch_cpu
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    mem = _PeakMemory(device)
    mem.start()
    for _ in range(cfg["warmup"]):
        run_step(batch)
    sync()
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        run_step(batch)
        sync()
        times.append(time.perf_counter() - t0)
    peak = mem.peak()
    median = statistics.median(times)
    return {
        "method": method,
        "impl": impl,
        "dims": dims,
        "backbone": name,
        "input": input_desc,
        "batch": cfg["batch"],
        "heads": heads,
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


def _child(method: str, impl: str, dims: int, cfg: dict, conn: Any) -> None:
    try:
        conn.send(("ok", run_one(method, impl, dims, cfg)))
    except BaseException as e:  # noqa: BLE001 - report any failure of the configuration to the parent
        conn.send(("error", f"{type(e).__name__}: {e}".splitlines()[0][:300]))
    finally:
        conn.close()


class Runner:
    """Runs each configuration in its own process: forked from a server that imported torch, MONAI and lightly once
    (``forkserver``, the default: no per-configuration import cost), or a fresh interpreter (``subprocess``)."""

    def __init__(self, isolation: str, timeout: float | None) -> None:
        self.isolation, self.timeout = isolation, timeout
        if isolation == "forkserver":
            import multiprocessing as mp

            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)

    def __call__(self, method: str, impl: str, dims: int, cfg: dict) -> tuple[str, Any]:
        if self.isolation == "subprocess":
            cmd = [sys.executable, os.path.abspath(__file__), "--one", method, impl, str(dims), json.dumps(cfg)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                return "error", f"timed out after {self.timeout} s"
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                return "error", err[:300]
            kind, payload = json.loads(lines[-1])
            return kind, payload
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child, args=(method, impl, dims, cfg, child))
        proc.start()
        child.close()
        try:
            if not parent.poll(self.timeout):
                proc.kill()
                proc.join()
                return "error", f"timed out after {self.timeout} s"
            kind, payload = parent.recv()
        except EOFError:
            kind, payload = "error", "the configuration's process died (out of memory?)"
        proc.join()
        if kind == "ok" and proc.exitcode not in (0, None):
            kind, payload = "error", f"exit code {proc.exitcode}"
        return kind, payload


# -- table -------------------------------------------------------------------------------------------------------------
_COLS = [
    ("method", 15, "<"),
    ("dims", 4, ">"),
    ("backbone", 18, ">"),
    ("input", 18, ">"),
    ("batch", 6, ">"),
    ("ours/s", 8, ">"),
    ("lightly/s", 10, ">"),
    ("ours/lightly", 13, ">"),
    ("base/s", 8, ">"),
    ("ovh%", 7, ">"),
    ("ours MiB", 12, ">"),
    ("lightly MiB", 12, ">"),
    ("target", 11, ">"),
]


def _fmt_row(values: list[str]) -> str:
    return "".join(f"{v:{a}{w}}" if i == 0 else f" {v:{a}{w}}" for i, (v, (_, w, a)) in enumerate(zip(values, _COLS)))


def _rate(r: dict | None) -> str:
    return f"{r['steps_per_s']:.2f}" if r else "err"


def _mib(r: dict | None) -> str:
    return f"{r['peak_growth_mib']:.0f}/{r['peak_mib']:.0f}" if r else "err"


def summarise(method: str, dims: int, res: dict[str, tuple[str, Any]]) -> dict:
    """The table row of one (method, dims) from its configurations' results."""
    get = {k: (v[1] if v[0] == "ok" else None) for k, v in res.items()}
    ours, light, base = get.get("ours"), get.get("lightly"), get.get("baseline")
    row: dict[str, Any] = {"method": method, "dims": dims, "ours": ours, "lightly": light, "baseline": base}
    row["errors"] = {k: v[1] for k, v in res.items() if v[0] == "error"}
    row["lightly_na"] = res["lightly"][1] if res["lightly"][0] == "n/a" else None
    row["ratio_ours_over_lightly"] = ours["steps_per_s"] / light["steps_per_s"] if ours and light else None
    row["overhead"] = (ours["step_s_median"] - base["step_s_median"]) / ours["step_s_median"] if ours and base else None
    misses = []
    if row["ratio_ours_over_lightly"] is not None and row["ratio_ours_over_lightly"] < 1.0:
        misses.append("slower")
    if row["overhead"] is not None and row["overhead"] >= 0.10:
        misses.append("ovh")
    if ours is None or (light is None and row["lightly_na"] is None) or base is None:
        row["target"] = "?"
    else:
        row["target"] = ",".join(misses) or "ok"
    ref = ours or light or base or {}
    row.update({k: ref.get(k, "?") for k in ("backbone", "input", "batch")})
    return row


def print_row(row: dict) -> None:
    ours, light, base = row["ours"], row["lightly"], row["baseline"]
    ratio, ovh = row["ratio_ours_over_lightly"], row["overhead"]
    values = [
        row["method"],
        str(row["dims"]),
        str(row["backbone"]),
        str(row["input"]),
        str(row["batch"]),
        _rate(ours),
        "n/a" if row["lightly_na"] else _rate(light),
        f"{ratio:.2f}" if ratio is not None else ("n/a" if row["lightly_na"] else "-"),
        _rate(base),
        f"{100 * ovh:.1f}" if ovh is not None else "-",
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
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps; the median is reported (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads in every configuration (default: torch's default, left alone; "
        "--quick: 1, because on a small shared machine OpenMP threads that wait for each other "
        "make a tiny step take seconds)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2D 64^2 batch 4, 3D 32^3 batch 2, 1 warm-up + 2 timed steps, 1 thread "
        "(Models Genesis / SwinUNETR-SSL at least 64); numbers are not meaningful",
    )
    parser.add_argument(
        "--isolation",
        choices=["forkserver", "subprocess"],
        default="forkserver",
        help="how each configuration gets its own process: forked from a server that imported the "
        "libraries once (default), or a fresh interpreter per configuration (slower to start)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per configuration (default: none)")
    parser.add_argument("--out", default=None, help="also write the rows and settings to this JSON file")
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "IMPL", "DIMS", "CFG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        method, impl, dims, cfg = args.one
        try:
            result = ["ok", run_one(method, impl, int(dims), json.loads(cfg))]
        except Exception as e:  # noqa: BLE001
            result = ["error", f"{type(e).__name__}: {e}".splitlines()[0][:300]]
        print(json.dumps(result))
        return

    defaults = {"size2d": 128, "size3d": 64, "batch2d": 32, "batch3d": 4, "warmup": 2, "repeats": 5, "threads": None}
    base = QUICK if args.quick else defaults
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}

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
    print(
        f"median of {opts['repeats']} step(s) after {opts['warmup']} warm-up; 2D {opts['size2d']}^2 batch "
        f"{opts['batch2d']}, 3D {opts['size3d']}^3 batch {opts['batch3d']}; AdamW lr={LR} wd={WEIGHT_DECAY}; "
        f"one process per configuration ({args.isolation})" + ("; QUICK (smoke run)" if args.quick else "")
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
            }
            res: dict[str, tuple[str, Any]] = {}
            for impl in ("baseline", "ours", "lightly"):
                if impl == "lightly" and (method in LIGHTLY_NA or lightly_version is None):
                    res[impl] = ("n/a", LIGHTLY_NA.get(method, "lightly is not installed"))
                    continue
                res[impl] = runner(method, impl, dims, cfg)
            row = summarise(method, dims, res)
            row["config"] = cfg
            rows.append(row)
            print_row(row)

    notes = []
    for row in rows:
        tag = f"{row['method']} {row['dims']}D"
        for impl, err in row["errors"].items():
            notes.append(f"  {tag} {impl} failed: {err}")
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
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            **opts,
        }
        with open(args.out, "w") as f:
            json.dump({"settings": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
