"""``multi_gpu_train.json``: the overrides that run a bundle's ``train.json`` under ``torchrun`` (DDP).

As in the MONAI model zoo, the file is merged over ``train.json``::

    torchrun --standalone --nproc_per_node 2 -m monai.bundle run \\
        --config_file "['configs/train.json', 'configs/multi_gpu_train.json']"

and the run gives the single-process result on the same global batch (up to the order of floating-point sums):

* ``initialize`` starts the process group first (:func:`~monai_transfer.engines.init_distributed`: NCCL on CUDA,
  gloo on CPU, from the ``torchrun`` environment) and ``finalize`` destroys it last.
* ``device`` is this rank's device (``cuda:LOCAL_RANK``, or the CPU when there is no CUDA).
* ``network`` is wrapped in ``DistributedDataParallel`` (:func:`~monai_transfer.engines.wrap_ddp`; on CUDA its
  BatchNorm layers become ``SyncBatchNorm`` first, so they see the global batch; ``SyncBatchNorm`` is CUDA only, so on
  CPU each rank normalises its own slice). The bare network is ``network_local``: the optimizer is built over it
  (``@network`` in ``optimizer`` becomes ``@network_local``) *before* the wrapping (``_requires_``), so that a
  fine-tuning strategy freezes its stages before DDP registers the trainable parameters; the evaluator runs it too.
  Strategies that unfreeze stages during training (gradual unfreezing, LP-FT) are not supported under DDP: DDP keeps
  the parameters that were trainable when it was built.
* The training loader draws from an :class:`~monai_transfer.engines.EpochSampler` (the order of each epoch a pure
  function of ``(seed, epoch)``, split across ranks so that the per-rank batches of a step are together the global
  batch) and loads ``batch_size / world_size`` samples per rank (an error when it does not divide).
* Validation is sharded (MONAI's ``DistributedSampler`` without padding) and the metrics are gathered across ranks by
  MONAI's metric handlers, so every rank sees the metric of the whole validation set: early stopping stops all ranks
  together.
* Handlers that only write (logs, TensorBoard, MLflow, checkpoints, progress bars) run on rank 0
  (:func:`~monai_transfer.engines.main_process_handlers`); ``RunCheckpoint`` runs on every rank and writes on rank 0.

Everything is written as ``_target_`` components (kept as JSON in ``multi_gpu_parts.json``) wrapping the values of
``train.json``, so the overrides fit any ``train.json`` with the model-zoo ids, whatever its components.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from monai_transfer.engines.templates import load_template

__all__ = ["multi_gpu_overrides"]

_REQUIRED = ("device", "network", "train#dataloader", "train#trainer", "validate#evaluator", "initialize", "run")


def _get(config: Mapping[str, Any], cid: str) -> Any:
    node: Any = config
    for part in cid.split("#"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(cid)
    return node


def _has(config: Mapping[str, Any], cid: str) -> bool:
    try:
        _get(config, cid)
    except KeyError:
        return False
    return True


def _loader(config: Mapping[str, Any], cid: str, arg: str) -> tuple[str, dict[str, Any]]:
    """The id and dict of the loader that ``<cid>#<arg>`` uses (followed through one ``@`` reference)."""
    value = _get(config, f"{cid}#{arg}")
    loader_id = f"{cid}#{arg}"
    if isinstance(value, str) and value.startswith("@"):
        loader_id = value[1:].replace("::", "#")
        value = _get(config, loader_id)
    if not isinstance(value, Mapping) or "dataset" not in value:
        raise ValueError(
            f"multi_gpu_overrides: {loader_id!r} must be a DataLoader component with a 'dataset' (to shard it across "
            f"ranks), got {value!r}"
        )
    return loader_id, dict(value)


def _is_epoch_sampler(config: Mapping[str, Any], value: Any) -> bool:
    if isinstance(value, str) and value.startswith("@"):
        try:
            value = _get(config, value[1:].replace("::", "#"))
        except KeyError:
            return False
    return isinstance(value, Mapping) and str(value.get("_target_", "")).endswith("EpochSampler")


def _to_local(value: Any) -> Any:
    """``@network`` references (not ``@network_def``...) in a config value -> ``@network_local``."""
    if isinstance(value, str):
        return re.sub(r"@network(?![A-Za-z0-9_])", "@network_local", value)
    if isinstance(value, list):
        return [_to_local(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_local(v) for k, v in value.items()}
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return copy.deepcopy(value) if isinstance(value, list) else [copy.deepcopy(value)]


def multi_gpu_overrides(train_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ids to change in ``train_config`` (a model-zoo ``train.json`` dict) to run it under ``torchrun``.

    Args:
        train_config: the raw ``train.json`` (ids ``device``, ``network``, ``train#dataloader`` or the trainer's
            ``train_data_loader``, ``train#trainer``, ``validate#evaluator`` with its ``val_data_loader``,
            ``initialize``, ``run``; optional ``seed``, ``finalize``).

    Returns:
        ``{id: value}`` (``#``-separated ids), to save as ``configs/multi_gpu_train.json`` and merge over
        ``train.json`` (MONAI merges config files in order, id by id).

    Raises:
        ValueError: an id the overrides need is missing, or a loader is not a component with a ``dataset``.
    """
    missing = [cid for cid in _REQUIRED if not _has(train_config, cid)]
    if missing:
        raise ValueError(f"multi_gpu_overrides: the train config lacks {missing} (model-zoo ids expected)")
    parts = load_template("monai_transfer.bundle.templates", "multi_gpu_parts.json")
    out: dict[str, Any] = {
        "device": {**parts["device"], "device": copy.deepcopy(train_config["device"])},
        # the bare network; the optimizer (and a fine-tuning strategy's freezing) act on it before DDP wraps it
        "network_local": copy.deepcopy(train_config["network"]),
        "network": parts["network"],
        "validate#evaluator#network": "@network_local",
    }
    if "optimizer" in train_config:
        out["network"]["_requires_"] = "@optimizer"
        out["optimizer"] = _to_local(copy.deepcopy(train_config["optimizer"]))

    # training data: the seeded, rank-split order, and the global batch split over the ranks
    train_id, train_loader = _loader(train_config, "train#trainer", "train_data_loader")
    if not _is_epoch_sampler(train_config, train_loader.get("sampler")):
        out["train#sampler"] = {
            **parts["train_sampler"],
            "data_source": copy.deepcopy(train_loader["dataset"]),
            "seed": "@seed" if "seed" in train_config else 0,
            "shuffle": copy.deepcopy(train_loader.get("shuffle", False)),
        }
        out[f"{train_id}#sampler"] = "@train#sampler"
    out[f"{train_id}#shuffle"] = False
    global_batch = copy.deepcopy(train_loader.get("batch_size", 1))
    out[f"{train_id}#batch_size"] = {**parts["batch_size"], "global_batch_size": global_batch}

    # validation: sharded without padding; MONAI's metric handlers gather the whole set on every rank
    val_id, val_loader = _loader(train_config, "validate#evaluator", "val_data_loader")
    out["validate#sampler"] = {**parts["validation_sampler"], "dataset": copy.deepcopy(val_loader["dataset"])}
    out[f"{val_id}#sampler"] = "@validate#sampler"
    out[f"{val_id}#shuffle"] = False

    # handlers that only write run on rank 0
    for cid, arg in (("train#trainer", "train_handlers"), ("validate#evaluator", "val_handlers")):
        if _has(train_config, f"{cid}#{arg}"):
            out[f"{cid}#{arg}"] = _main_process_handlers(_get(train_config, f"{cid}#{arg}"), parts)

    imports = _list(train_config.get("imports"))
    if any(isinstance(v, str) and v.startswith("$monai_transfer.") for v in out.values()) and not any(
        i in ("$import monai_transfer", "$import monai_transfer.engines") for i in imports
    ):  # the handlers expression names the package
        out["imports"] = [*imports, "$import monai_transfer"]
    out["initialize"] = [parts["initialize"], *_list(train_config["initialize"])]
    out["finalize"] = [*_list(train_config.get("finalize")), parts["finalize"]]
    return out


def _main_process_handlers(handlers: Any, parts: Mapping[str, Any]) -> Any:
    """An engine's handlers on rank 0, and without the ones that only write on the other ranks.

    A reference (``"@train#handlers"``, the model zoo's way) becomes an expression, as in the model zoo's own
    ``multi_gpu_train.json``: MONAI's ``ConfigWorkflow.check_properties`` reads the engine's handlers argument as a
    string (a reference to the handlers property, or an expression it skips) and fails on a component there.
    """
    if isinstance(handlers, str) and handlers.startswith("@"):
        return f"$monai_transfer.engines.main_process_handlers({handlers})"
    return {**parts["main_process_handlers"], "handlers": copy.deepcopy(handlers)}
