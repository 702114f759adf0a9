"""A tiny fine-tuning run as a bundle config, for the resume and DDP tests (imported, or run as a script).

The config has the ids of ``monai_transfer.bundle.templates.finetune`` (``device``, ``network_def``, ``network``,
``optimizer``, ``train#dataset``, ``train#dataloader``, ``train#trainer``, ``train#handlers``, ``validate#evaluator``,
``validate#handlers``, ``initialize``, ``run``, ``finalize``, ``ckpt_dir``, ``seed``, ``resume``) with the exact-resume
components: ``RunCheckpoint`` in ``train#handlers``, ``EpochSampler`` as the training sampler and ``EpochSeedHandler``
re-seeding the random transforms every epoch. The data are synthetic 2D images whose label shifts the intensity
(in memory: nothing is read or downloaded); the network a narrow ResNet-10 with a dropout head.

``python finetune_toy.py OUT RESULT.pt [--resume auto|never] [--epochs N] [--norm batch|group] [--dropout P]
[--multi-gpu]`` runs it with ``run_config`` and saves the final weights and the losses of every iteration in
``RESULT.pt``. ``MT_TEST_KILL_AT_EPOCH=k`` in the environment SIGKILLs the process at the start of epoch ``k`` (after
the checkpoint of epoch ``k - 1``). ``--multi-gpu`` merges ``multi_gpu_overrides`` over the config, as
``python -m monai.bundle run --config_file "['train.json', 'multi_gpu_train.json']"`` does (run under ``torchrun``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

KILL_ENV = "MT_TEST_KILL_AT_EPOCH"
_FROM_PRED_LABEL = "$monai.handlers.from_engine(['pred', 'label'])"


def toy_train_config(
    bundle_root: str | os.PathLike,
    max_epochs: int = 3,
    seed: int = 0,
    resume: str = "never",
    norm: Any = "batch",
    dropout: float = 0.2,
    batch_size: int = 4,
    n_train: int = 16,
    n_val: int = 8,
    size: int = 32,
    lr: float = 1e-2,
    optimizer: str = "torch.optim.AdamW",
    augment: bool = True,
    patience: int | None = None,
) -> dict[str, Any]:
    """The ``train.json`` dict of the toy run."""
    image = "(numpy.random.default_rng({s} + i).standard_normal((1, @size, @size)) + 0.5 * (i % 2)).astype('float32')"
    train_data = f"$[{{'image': {image.format(s=0)}, 'label': numpy.array([i % 2])}} for i in range(@n_train)]"
    val_data = f"$[{{'image': {image.format(s=1000)}, 'label': numpy.array([i % 2])}} for i in range(@n_val)]"
    train_xs: list[Any] = []
    if augment:
        train_xs += [
            {"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 0},
            {"_target_": "RandGaussianNoised", "keys": "image", "prob": 0.5, "std": 0.2},
        ]
    train_xs.append({"_target_": "EnsureTyped", "keys": ["image", "label"], "track_meta": False})
    return {
        "imports": ["$import numpy", "$import torch", "$import monai", "$import monai_transfer"],
        "bundle_root": os.fspath(bundle_root),
        "ckpt_dir": "$@bundle_root + '/models'",
        "device": "$torch.device('cpu')",
        "seed": seed,
        "resume": resume,
        "size": size,
        "n_train": n_train,
        "n_val": n_val,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "network_def": {
            "_target_": "monai_transfer.networks.create_transfer_net",
            "backbone": "resnet10",
            "task": "classification",
            "spatial_dims": 2,
            "in_channels": 1,
            "num_classes": 2,
            "backbone_kwargs": {"norm": norm, "widen_factor": 0.25},
            "head_kwargs": {"dropout": dropout},
            "seed": "@seed",
        },
        "network": "$@network_def.to(@device)",
        "optimizer": {"_target_": optimizer, "params": "$@network.parameters()", "lr": "@lr"},
        "loss": {"_target_": "monai_transfer.losses.LabelCrossEntropyLoss"},
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": train_xs},
            "dataset": {"_target_": "Dataset", "data": train_data, "transform": "@train#preprocessing"},
            "sampler": {"_target_": "monai_transfer.engines.EpochSampler", "data_source": "@train#dataset",
                        "seed": "@seed"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size",
                           "sampler": "@train#sampler", "shuffle": False, "num_workers": 0},
            "handlers": [
                {"_target_": "monai_transfer.engines.EpochSeedHandler", "seed": "@seed",
                 "transform": "@train#preprocessing"},
                {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
                 "interval": 1},
                {"_target_": "StatsHandler", "tag_name": "train_loss", "iteration_log": False,
                 "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
                {"_target_": "monai_transfer.engines.RunCheckpoint", "save_dir": "@ckpt_dir", "network": "@network",
                 "optimizer": "@optimizer", "resume": "@resume", "config": {"seed": "@seed"},
                 "objects": {"best": "@validate#best_checkpoint", "early_stop": "@validate#early_stop",
                             "evaluator": "@validate#evaluator"}},
            ],
            "trainer": {"_target_": "SupervisedTrainer", "max_epochs": max_epochs, "device": "@device",
                        "train_data_loader": "@train#dataloader", "network": "@network", "optimizer": "@optimizer",
                        "loss_function": "@loss", "train_handlers": "@train#handlers"},
        },
        "validate": {
            "preprocessing": {"_target_": "EnsureTyped", "keys": ["image", "label"], "track_meta": False},
            "dataset": {"_target_": "Dataset", "data": val_data, "transform": "@validate#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": 2,
                           "shuffle": False, "num_workers": 0},
            "postprocessing": {"_target_": "Compose", "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "label", "to_onehot": 2}]},
            # referenced by id (the run checkpoint names them), listed in the evaluator's handlers by reference
            "best_checkpoint": {"_target_": "monai_transfer.finetune.trainer.AtomicBestCheckpoint",
                                "path": "$@ckpt_dir + '/model.pt'", "network": "@network", "metric_name": "auroc",
                                "weights_only": True},
            "early_stop": {"_target_": "monai_transfer.finetune.trainer.EarlyStopOnMetric", "patience": "@patience",
                           "metric_name": "auroc"},
            "handlers": [
                {"_target_": "StatsHandler", "iteration_log": False},
                "@validate#best_checkpoint",
                "@validate#early_stop",
            ],
            "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                          "val_data_loader": "@validate#dataloader", "network": "@network",
                          "postprocessing": "@validate#postprocessing",
                          "key_val_metric": {"auroc": {"_target_": "ROCAUC", "output_transform": _FROM_PRED_LABEL}},
                          "val_handlers": "@validate#handlers"},
        },
        "initialize": [
            "$torch.manual_seed(@seed)",
            "$[h.set_trainer(@train#trainer) for h in @validate#handlers if hasattr(h, 'set_trainer')]",
        ],
        "run": ["$@train#trainer.run()"],
        "finalize": [],
    }  # fmt: skip


class KillAtEpoch:
    """SIGKILL this process at ``EPOCH_STARTED`` of ``epoch`` (the checkpoint of the epoch before is on disk)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class LossRecorder:
    """Keep ``{iteration: loss}`` of the trainer (to compare runs step by step)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.losses[int(engine.state.iteration)] = float(engine.state.output[0]["loss"]
                                                         if isinstance(engine.state.output, list)
                                                         else engine.state.output["loss"])  # fmt: skip


def script_config(out: str | os.PathLike, resume: str = "never", **kwargs: Any) -> dict[str, Any]:
    """The toy config with a loss recorder (and the killer when ``MT_TEST_KILL_AT_EPOCH`` is set)."""
    config = toy_train_config(out, resume=resume, **kwargs)
    config["train"]["handlers"].append({"_target_": "finetune_toy.LossRecorder"})
    kill_at = os.environ.get(KILL_ENV)
    if kill_at:
        config["train"]["handlers"].insert(0, {"_target_": "finetune_toy.KillAtEpoch", "epoch": int(kill_at)})
    return config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("result")
    p.add_argument("--resume", default="never")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--norm", default="batch")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--optimizer", default="torch.optim.AdamW")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--multi-gpu", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)

    from monai_transfer.engines import run_config

    norm = json.loads(a.norm) if a.norm.startswith("[") else a.norm
    config = script_config(a.out, resume=a.resume, max_epochs=a.epochs, norm=norm, dropout=a.dropout,
                           batch_size=a.batch_size, optimizer=a.optimizer, augment=not a.no_augment)  # fmt: skip
    configs: Any = config
    if a.multi_gpu:
        from monai_transfer.bundle.templates.multi_gpu import multi_gpu_overrides

        folder = Path(a.out) / "source"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text(json.dumps(config, indent=4))
        (folder / "multi_gpu_train.json").write_text(json.dumps(multi_gpu_overrides(config), indent=4))
        configs = [folder / "train.json", folder / "multi_gpu_train.json"]
    run = run_config(configs, a.out, run=False)
    try:
        run.workflow.run()
        from monai_transfer.engines import RunCheckpoint

        trainer = run.get("train#trainer")
        handlers = run.get("train#handlers")
        ckpt = next(h for h in handlers if isinstance(h, RunCheckpoint))
        recorder = next(h for h in handlers if type(h).__name__ == "LossRecorder")  # finetune_toy's, not __main__'s
        network = run.get("network")
        net = getattr(network, "module", network)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        result = {
            "weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "losses": recorder.losses,
            "epoch": int(trainer.state.epoch),
            "iteration": int(trainer.state.iteration),
            "resumed_from": ckpt.resumed_from,
            "resumed_finished": ckpt.resumed_finished,
            "best_metric": run.get("validate#best_checkpoint").best_metric,
            "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        }
        if rank == 0:
            torch.save(result, a.result)
    finally:
        run.workflow.finalize()


if __name__ == "__main__":
    main()
