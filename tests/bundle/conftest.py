"""Fixtures: a minimal valid bundle in the model-zoo layout our writer produces, built by hand."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"

NETWORK_DEF = {
    "_target_": "monai_transfer.networks.create_transfer_net",
    "backbone": "resnet10",
    "task": "classification",
    "spatial_dims": 2,
    "in_channels": 1,
    "num_classes": 2,
    "backbone_kwargs": {"widen_factor": 0.125},
}

DETERMINISTIC_TRANSFORMS = [
    {"_target_": "LoadImaged", "keys": "image", "image_only": True},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "ScaleIntensityd", "keys": "image"},
    {"_target_": "Resized", "keys": "image", "spatial_size": [32, 32]},
    {"_target_": "EnsureTyped", "keys": "image"},
]


def metadata() -> dict:
    return {
        "schema": SCHEMA_URL,
        "version": "0.1.0",
        "changelog": {"0.1.0": "initial bundle: resnet10 fine-tuned from SSL weights"},
        "monai_version": "1.6.1",
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"monai_transfer": "0.1.0"},
        "supported_apps": {},
        "name": "Tiny 2D classification",
        "task": "Binary classification of 2D MR slices",
        "description": "A tiny resnet10 classifier used to test the bundle linter.",
        "authors": "monai_transfer tests",
        "copyright": "Copyright (c) monai_transfer contributors",
        "data_source": "simulated from the MNI152 template",
        "data_type": "nibabel",
        "image_classes": "single channel MR slice, intensity scaled to [0, 1]",
        "label_classes": "0 normal, 1 lesion",
        "pred_classes": "2 channels: probabilities of normal and lesion",
        "eval_metrics": {"accuracy": 0.5},
        "intended_use": "Testing only",
        "references": ["He et al., Deep Residual Learning for Image Recognition, CVPR 2016"],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 1,
                    "spatial_shape": ["32*n", "32*n"],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "num_channels": 2,
                    "spatial_shape": [1, 2],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "normal", "1": "lesion"},
                }
            },
        },
    }


def train_config() -> dict:
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        "images": "$sorted(glob.glob(@dataset_dir + '/*.nii.gz'))",
        "labels": "$[int('lesion' in os.path.basename(i)) for i in @images]",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "val_interval": 1,
        "network_def": dict(NETWORK_DEF),
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "torch.nn.CrossEntropyLoss"},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.0001},
        "train": {
            "deterministic_transforms": DETERMINISTIC_TRANSFORMS,
            "random_transforms": [{"_target_": "RandFlipd", "keys": "image", "prob": 0.5, "spatial_axis": 0}],
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@train#deterministic_transforms + @train#random_transforms",
            },
            "dataset": {
                "_target_": "Dataset",
                "data": "$[{'image': i, 'label': l} for i, l in zip(@images[:-2], @labels[:-2])]",
                "transform": "@train#preprocessing",
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@train#dataset",
                "batch_size": 2,
                "shuffle": True,
                "num_workers": 0,
            },
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False], "to_onehot": 2},
                ],
            },
            "handlers": [
                {
                    "_target_": "ValidationHandler",
                    "validator": "@validate#evaluator",
                    "epoch_level": True,
                    "interval": "@val_interval",
                },
                {
                    "_target_": "StatsHandler",
                    "tag_name": "train_loss",
                    "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                },
            ],
            "key_metric": {
                "train_accuracy": {
                    "_target_": "ignite.metrics.Accuracy",
                    "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                }
            },
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": 2,
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "@train#inferer",
                "postprocessing": "@train#postprocessing",
                "key_train_metric": "@train#key_metric",
                "train_handlers": "@train#handlers",
                "amp": False,
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "%train#deterministic_transforms"},
            "dataset": {
                "_target_": "Dataset",
                "data": "$[{'image': i, 'label': l} for i, l in zip(@images[-2:], @labels[-2:])]",
                "transform": "@validate#preprocessing",
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@validate#dataset",
                "batch_size": 2,
                "shuffle": False,
                "num_workers": 0,
            },
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": "%train#postprocessing",
            "handlers": [
                {"_target_": "StatsHandler", "iteration_log": False},
                {
                    "_target_": "CheckpointSaver",
                    "save_dir": "@ckpt_dir",
                    "save_dict": {"model": "@network"},
                    "save_key_metric": True,
                    "key_metric_filename": "model.pt",
                },
            ],
            "key_metric": {
                "val_accuracy": {
                    "_target_": "ignite.metrics.Accuracy",
                    "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                }
            },
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "val_handlers": "@validate#handlers",
                "amp": False,
            },
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": ["$@train#trainer.run()"],
        "finalize": ["$monai.utils.set_determinism(seed=None)"],
    }


def evaluate_config() -> dict:
    return {
        "validate#handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@ckpt_dir + '/model.pt'",
                "load_dict": {"model": "@network"},
            },
            {"_target_": "StatsHandler", "iteration_log": False},
            {
                "_target_": "MetricsSaver",
                "save_dir": "@output_dir",
                "metrics": ["val_accuracy"],
                "metric_details": ["val_accuracy"],
            },
        ],
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)"],
        "run": ["$@validate#evaluator.run()"],
    }


def multi_gpu_config() -> dict:
    return {
        "device": "$torch.device('cuda:' + os.environ['LOCAL_RANK'])",
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": "$@network_def.to(@device)",
            "device_ids": ["@device"],
        },
        "train#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "train#trainer#train_handlers": "$@train#handlers[: -2 if dist.get_rank() > 0 else None]",
        "validate#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "validate#dataloader#sampler": "@validate#sampler",
        "validate#evaluator#val_handlers": "$None if dist.get_rank() > 0 else @validate#handlers",
        "initialize": [
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend='nccl')",
            "$torch.cuda.set_device(@device)",
            "$monai.utils.set_determinism(seed=123)",
        ],
        "run": ["$@train#trainer.run()"],
        "finalize": ["$dist.is_initialized() and dist.destroy_process_group()"],
    }


def inference_config() -> dict:
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        "datalist": "$sorted(glob.glob(@dataset_dir + '/*.nii.gz'))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": dict(NETWORK_DEF),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": DETERMINISTIC_TRANSFORMS},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            ],
        },
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@bundle_root + '/models/model.pt'",
                "load_dict": {"model": "@network"},
            },
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": ["$@evaluator.run()"],
        "finalize": ["$monai.utils.set_determinism(seed=None)"],
    }


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def write_json(path: Path, data: dict, indent: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def build_network(**overrides) -> torch.nn.Module:
    from monai_transfer.networks import create_transfer_net

    kwargs = {k: v for k, v in {**NETWORK_DEF, **overrides}.items() if k != "_target_"}
    return create_transfer_net(**kwargs)


def make_bundle(root: Path) -> Path:
    """Write a minimal valid bundle to ``root`` (model-zoo layout, 4-space JSON, a fitting ``models/model.pt``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "LICENSE").write_text("Apache License 2.0\n")
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "README.md").write_text("# Tiny 2D classification\n\nA bundle for testing the linter.\n")
    write_json(root / "configs" / "metadata.json", metadata())
    write_json(root / "configs" / "train.json", train_config())
    write_json(root / "configs" / "evaluate.json", evaluate_config())
    write_json(root / "configs" / "multi_gpu_train.json", multi_gpu_config())
    write_json(root / "configs" / "inference.json", inference_config())
    (root / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (root / "models").mkdir(exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_network().state_dict(), root / "models" / "model.pt")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (and the set of directories)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


@pytest.fixture(scope="session")
def valid_bundle_template(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("template") / "bundle")


@pytest.fixture
def valid_bundle(valid_bundle_template, tmp_path) -> Path:
    """A fresh copy of the valid bundle, free to mutate."""
    return Path(shutil.copytree(valid_bundle_template, tmp_path / "bundle"))
