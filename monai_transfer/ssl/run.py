"""``pretrain``: one self-supervised run from a config to published encoder weights.

Writes into ``config.out`` only:

* ``config.yaml``: the resolved configuration (every default filled in), enough to repeat the run;
* ``checkpoints/last.pt`` (+ ``last.prev.pt``, ``last.json``): atomic training checkpoints for exact resume;
* ``encoder.pt``: the encoder's weights with a provenance record, ready for ``load_pretrained`` and bundle export;
* ``result.json``: losses per epoch, kNN monitor history, timings; ``loss.png``: the loss curve;
* ``tensorboard/`` (and an MLflow run when ``mlflow_uri`` is set).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_transfer.ssl.config import PretrainConfig
from monai_transfer.ssl.views import pretrain_intensity

__all__ = ["pretrain", "resolve_config"]

logger = logging.getLogger("monai_transfer.ssl")


#: configuration fields holding local paths, left out of the provenance record published with the weights
_PATH_FIELDS = ("data", "out", "pretrained", "resume", "monitor_data", "mlflow_uri")


def resolve_config(config: PretrainConfig) -> PretrainConfig:
    """Fill the ``None`` fields from the method's recommendations and check the method/backbone pair."""
    from monai_transfer.ssl.registry import check_method_backbone

    for name in ("method", "backbone", "data", "out"):
        if not getattr(config, name):
            raise ValueError(f"pretraining needs {name!r} (see `monai-transfer pretrain --help`)")
    spec = check_method_backbone(config.method, config.backbone, config.spatial_dims)
    d = spec.defaults
    values = config.to_dict()
    values["method"] = spec.name
    values["roi_size"] = list(config.roi())
    values["optimizer"] = config.optimizer or d.get("optimizer", "adamw")
    values["lr"] = config.lr if config.lr is not None else float(d.get("lr", 1e-3))
    values["weight_decay"] = config.weight_decay if config.weight_decay is not None else float(d.get("weight_decay", 0))
    if config.weight_decay_end is None:
        values["weight_decay_end"] = float(d.get("weight_decay_end", values["weight_decay"]))
    if config.warmup_epochs is None:
        values["warmup_epochs"] = min(10.0, 0.1 * config.epochs)
    if config.teacher_momentum is None and "teacher_momentum" in d:
        values["teacher_momentum"] = [float(m) for m in d["teacher_momentum"]]
    if config.teacher_temperature is None and spec.name == "dino":
        # DINO: teacher temperature 0.04 -> 0.07 over the first 30 epochs (paper, ViT-S/16 recipe)
        values["teacher_temperature"] = [0.04, 0.07, float(min(30, config.epochs))]
    return PretrainConfig.from_dict(values, where="resolved config")


def _device(name: str | None) -> torch.device:
    if name is not None:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load_images(config: PretrainConfig) -> tuple[list[dict[str, Any]], str]:
    from monai_transfer.data.datalist import load_datalist, load_datalist_file

    sections = load_datalist_file(config.data)
    section = config.section
    if section is None:
        section = "unlabeled" if sections.get("unlabeled") else "training"
    if not sections.get(section):
        raise ValueError(f"{config.data}: section {section!r} is missing or empty; sections: {sorted(sections)}")
    rows = load_datalist(config.data, key=section, required_keys=("image",))
    # only the image travels: labels or IDs in the datalist are not needed and must not reach logs
    return [{"image": r["image"]} for r in rows], section


def _view_options(config: PretrainConfig, backbone: torch.nn.Module, roi: tuple[int, ...]) -> dict[str, Any]:
    """View options the backbone imposes, unless the user set them: a ViT has one input size and one patch grid."""
    options = dict(config.view_kwargs)
    if hasattr(backbone, "patch_size") and hasattr(backbone, "grid_size"):
        if config.method == "dino":
            options.setdefault("local_roi_size", list(roi))  # a ViT takes only its img_size
        if config.method == "mae":
            options.setdefault("mask_patch_size", list(backbone.patch_size))  # MAE masks exactly the ViT's patches
    return options


def _optimizer(config: PretrainConfig, method: torch.nn.Module) -> torch.optim.Optimizer:
    groups = method.parameter_groups(float(config.weight_decay))
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=float(config.lr), momentum=0.9)
    return torch.optim.AdamW(groups, lr=float(config.lr))


def _plot_losses(path: Path, losses: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_transfer.utils.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="o" if len(losses) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def pretrain(config: PretrainConfig | Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Pretrain a backbone with a self-supervised method and save its encoder with provenance.

    Runs the same way in one process and under ``torchrun`` (one process per device; ranks share the work, rank 0
    writes the outputs). A run killed at any point continues exactly with ``resume="auto"``.

    Args:
        config: a ``PretrainConfig`` or a mapping of its fields.
        overrides: fields that replace those of ``config`` (``None`` values are ignored).

    Returns:
        The summary also written to ``<out>/result.json``.
    """
    from monai_transfer.ssl import distributed as dist_utils

    if config is None:
        config = PretrainConfig()
    elif isinstance(config, Mapping):
        config = PretrainConfig.from_dict(config)
    config = resolve_config(config.merged(overrides))
    # a process group the caller made is theirs to destroy; one made here (under torchrun) is destroyed here
    owns_group = not dist_utils.is_distributed()
    distributed = dist_utils.init_distributed()
    try:
        return _pretrain(config, distributed)
    finally:
        if owns_group:
            dist_utils.cleanup()


def _pretrain(config: PretrainConfig, distributed: bool) -> dict[str, Any]:
    from ignite.engine import Events
    from monai.handlers import StatsHandler, from_engine

    from monai_transfer.networks import create_backbone
    from monai_transfer.networks.registry import get_backbone_config
    from monai_transfer.ssl import distributed as dist_utils
    from monai_transfer.ssl.checkpoint import TrainingCheckpoint, resume
    from monai_transfer.ssl.data import make_ssl_dataloader
    from monai_transfer.ssl.registry import create_method, get_method_spec
    from monai_transfer.ssl.schedules import ScheduleHandler
    from monai_transfer.ssl.trainer import SSLTrainer
    from monai_transfer.ssl.views import make_load_transforms, make_pretrain_transforms
    from monai_transfer.utils.atomic import atomic_write_json, atomic_write_text
    from monai_transfer.weights import Provenance, save_pretrained

    spec = get_method_spec(config.method)
    out = Path(config.out)
    device = dist_utils.local_device(_device(config.device)) if distributed else _device(config.device)
    main = dist_utils.is_main_process()
    amp = bool(config.amp) if config.amp is not None else device.type == "cuda"

    images, section = _load_images(config)
    roi = config.roi()
    if main:
        import yaml

        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    # the weights' initialisation draws from a forked RNG seeded by the config: reproducible, no global side effect
    backbone_kwargs = dict(config.backbone_kwargs)
    if get_backbone_config(config.backbone).family == "vit":
        backbone_kwargs.setdefault("img_size", roi)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone = create_backbone(
            config.backbone, config.spatial_dims, config.in_channels, pretrained=config.pretrained, **backbone_kwargs
        )
        method_kwargs = dict(config.method_kwargs)
        if distributed and "gather_distributed" in inspect.signature(spec.resolve().__init__).parameters:
            # negatives and batch statistics come from every rank: the loss then equals the single-process one
            method_kwargs.setdefault("gather_distributed", True)
        method = create_method(config.method, backbone, **method_kwargs)
    method = method.to(device)
    optimizer = _optimizer(config, method)
    model = dist_utils.wrap_ddp(method, device) if distributed else method

    views = _view_options(config, backbone, roi)
    if config.cache:
        # the deterministic head (read + intensity) runs once per image; the random views every epoch
        cache_transform = make_load_transforms(config.modality)
        transform = make_pretrain_transforms(
            config.method, config.spatial_dims, roi, modality=config.modality, load=False, intensity=None, **views
        )
    else:
        cache_transform = None
        transform = make_pretrain_transforms(config.method, config.spatial_dims, roi, modality=config.modality, **views)
    loader = make_ssl_dataloader(
        images,
        transform,
        batch_size=config.batch_size,
        seed=config.seed,
        num_workers=config.num_workers,
        cache_transform=cache_transform,
    )
    if len(loader) == 0:
        raise ValueError(
            f"{config.data}: {len(images)} image(s) in section {section!r} make no full batch of {config.batch_size}"
            f"{' per rank' if distributed else ''}; lower --batch-size"
        )
    epoch_length = len(loader)
    total_steps = epoch_length * config.epochs

    trainer = SSLTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=loader,
        method=model,
        optimizer=optimizer,
        amp=amp,
        # asked-for mixed precision off CUDA means bfloat16 (float16 autocast is CUDA-only)
        amp_dtype=torch.bfloat16 if amp and device.type != "cuda" else None,
        grad_clip_norm=config.grad_clip,
    )
    ScheduleHandler(
        total_steps=total_steps,
        epoch_length=epoch_length,
        lr=(float(config.lr), float(config.min_lr)),
        warmup_steps=int(round(config.warmup_epochs * epoch_length)),
        weight_decay=(float(config.weight_decay), float(config.weight_decay_end)),
        teacher_momentum=tuple(config.teacher_momentum) if config.teacher_momentum else None,
        teacher_temperature=tuple(config.teacher_temperature) if config.teacher_temperature else None,
    ).attach(trainer)

    epoch_losses: list[float] = []
    running: dict[str, float] = {"sum": 0.0, "n": 0}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _accumulate(engine: Any) -> None:
        running["sum"] += float(engine.state.output["loss"])
        running["n"] += 1

    @trainer.on(Events.EPOCH_COMPLETED)
    def _epoch_mean(engine: Any) -> None:
        epoch_losses.append(running["sum"] / max(running["n"], 1))
        engine.state.metrics["epoch_loss"] = epoch_losses[-1]
        running.update(sum=0.0, n=0)

    # handlers run in the order attached: the monitor and the loss bookkeeping before the checkpoint that stores them
    monitor = _attach_monitor(trainer, config, method, roi, device) if config.monitor_data else None
    ckpt_dir = out / "checkpoints"
    objects = {"monitor": monitor} if monitor is not None else {}
    if main:
        StatsHandler(
            name=logger.name, output_transform=from_engine(["loss"], first=True), iteration_log=False, tag_name="loss"
        ).attach(trainer)
        _attach_tracking(trainer, config, out)
        if config.progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(trainer, output_transform=from_engine(["loss"], first=True))
        TrainingCheckpoint(
            ckpt_dir,
            every=config.checkpoint_every,
            config=config.to_dict(),
            objects=objects,
            extra_state=lambda: {"epoch_losses": list(epoch_losses), "running": dict(running)},
        ).attach(trainer)

    resumed_from = None
    if config.resume is not None:
        path = ckpt_dir / "last.pt" if config.resume == "auto" else Path(config.resume)
        if path.is_file():
            previous = resume(trainer, path, objects=objects)
            resumed_from = str(path)
            extra = previous.get("extra") or {}
            epoch_losses.extend(extra.get("epoch_losses", []))
            running.update(extra.get("running", {}))
            logger.info("resumed from %s at epoch %d, iteration %d", path, trainer.state.epoch, trainer.state.iteration)
        elif config.resume != "auto":
            raise FileNotFoundError(f"checkpoint to resume from not found: {path}")

    t0 = time.perf_counter()
    try:
        trainer.run()
    finally:
        writer = getattr(trainer, "tb_writer", None)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - t0

    result: dict[str, Any] = {}
    if main:
        encoder = method.export_encoder()
        provenance = Provenance(
            method=f"{spec.name} (self-supervised, monai_transfer)",
            source_data=f"{len(images)} unlabeled images, section {section!r} of {os.path.basename(config.data)}",
            modality={"ct": "CT", "mr": "MR", "xr": "radiograph"}[config.modality],
            input_size=roi,
            intensity_normalisation=f"monai_transfer intensity preset {config.modality!r}",
            preprocessing={"intensity": pretrain_intensity(config.modality)},
            backbone_name=config.backbone,
            citation=spec.paper,
            notes=(
                f"initialised from {os.path.basename(config.pretrained)}"
                if config.pretrained
                else "random initialisation"
            ),
            extra={
                "epochs": int(trainer.state.epoch),
                "iterations": int(trainer.state.iteration),
                "final_epoch_loss": epoch_losses[-1] if epoch_losses else None,
                "seed": config.seed,
                # paths stay out of published weights: folder names can carry patient or site names
                "pretraining_config": {k: v for k, v in config.to_dict().items() if k not in _PATH_FIELDS},
            },
        )
        encoder_path = save_pretrained(encoder, out / "encoder.pt", provenance)
        if epoch_losses:
            _plot_losses(out / "loss.png", epoch_losses, f"{spec.name} / {config.backbone} {config.spatial_dims}D")
        result = {
            "method": spec.name,
            "backbone": config.backbone,
            "spatial_dims": config.spatial_dims,
            "images": len(images),
            "epochs": int(trainer.state.epoch),
            "iterations": int(trainer.state.iteration),
            "epoch_losses": epoch_losses,
            "knn_accuracy": monitor.history if monitor is not None else None,
            "encoder": str(encoder_path),
            "resumed_from": resumed_from,
            "seconds": round(seconds, 2),
            "device": str(device),
            "world_size": dist_utils.world_size(),
            "amp": amp,
        }
        atomic_write_json(out / "result.json", result)
    return result


def _attach_tracking(trainer: Any, config: PretrainConfig, out: Path) -> None:
    from ignite.engine import Events
    from monai.handlers import from_engine

    if config.tensorboard:
        from monai.utils import optional_import

        SummaryWriter, has_tb = optional_import("torch.utils.tensorboard", name="SummaryWriter")
        if has_tb:
            from monai.handlers import TensorBoardStatsHandler

            writer = SummaryWriter(log_dir=str(out / "tensorboard"))
            TensorBoardStatsHandler(
                summary_writer=writer, output_transform=from_engine(["loss"], first=True), tag_name="loss"
            ).attach(trainer)
            trainer.add_event_handler(Events.COMPLETED, lambda _: writer.close())
            trainer.tb_writer = writer
        else:
            logger.warning("TensorBoard logging is off: the tensorboard package is not installed")
    if config.mlflow_uri:
        from monai.handlers import MLFlowHandler

        MLFlowHandler(
            tracking_uri=config.mlflow_uri,
            output_transform=from_engine(["loss"], first=True),
            experiment_name="monai_transfer_pretrain",
            run_name=f"{config.method}-{config.backbone}-{config.spatial_dims}d-seed{config.seed}",
            experiment_param={
                k: v
                for k, v in config.to_dict().items()
                if isinstance(v, (int, float, str)) and k not in _PATH_FIELDS  # no local paths in a shared tracker
            },
            tag_name="loss",
        ).attach(trainer)


def _attach_monitor(trainer: Any, config: PretrainConfig, method: Any, roi: tuple[int, ...], device: torch.device):
    from monai_transfer.ssl.monitor import KNNMonitor, monitor_sets

    train_set, val_set = monitor_sets(config.monitor_data, config.spatial_dims, roi, modality=config.modality)
    monitor = KNNMonitor(method, train_set, val_set, every=config.monitor_every, k=config.monitor_k, device=device)
    monitor.attach(trainer)
    return monitor
