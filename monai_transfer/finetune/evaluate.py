"""Evaluate a fine-tuning run's best weights on a datalist section, per case, rebuilt from the run's saved config.

The run folder holds what ran: ``configs/train.json`` (the resolved config) and ``models/model.pt`` (the best
weights, a bare ``state_dict``). The network (``network_def``), the validation transforms and the inferer are built
from that config, so evaluation sees the data exactly as validation did, intensity mapping included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from monai_transfer.engines.device import default_device
from monai_transfer.engines.environment import environment_record
from monai_transfer.engines.precision import (
    PrecisionInferer,
    monai_amp,
    prepare_network,
    resolve_precision,
    sample_size,
)
from monai_transfer.engines.workflow import unwrap_config_error
from monai_transfer.finetune.cases import datalist_cases
from monai_transfer.finetune.loaders import make_loader
from monai_transfer.finetune.trainer import make_evaluator

__all__ = ["evaluate", "load_run", "RunLoadError", "MODEL_FILE", "CONFIG_FILE"]

MODEL_FILE = "models/model.pt"
CONFIG_FILE = "configs/train.json"


class RunLoadError(ValueError):
    """A run folder (or checkpoint) that cannot be evaluated: missing, unreadable or not fitting its config."""


def load_run(
    run_dir: str | os.PathLike, device: str | torch.device | None = None, overrides: Any = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The network (best weights loaded strictly) and the resolved config parser of a fine-tuning run folder.

    Args:
        run_dir: the folder ``finetune`` wrote (or a bundle folder with ``models/model.pt``), or its ``model.pt``.
        overrides: ``id=value`` strings or a mapping applied to the run's config first (``--set``: e.g. the sliding
            window ``validate#inferer#overlap=0.5``); an id the config lacks is an error naming the closest ones.

    Returns:
        ``(network, parser, facts)`` with ``facts``: ``task``, ``num_classes``, ``spatial_dims``, ``labels``.

    Raises:
        RunLoadError: what is missing or wrong, naming the file.
    """
    from monai.bundle import ConfigParser

    root = Path(run_dir)
    if root.is_file():  # .../models/model.pt
        root = root.parent.parent
    config, model = root / CONFIG_FILE, root / MODEL_FILE
    for f in (config, model):
        if not f.is_file():
            raise RunLoadError(f"{f} not found: {root} is not a finished fine-tuning run (or bundle)")
    from monai_transfer.engines.workflow import apply_overrides, load_config, parse_overrides

    try:
        raw = load_config(config)
    except (OSError, ValueError) as err:
        raise RunLoadError(f"{config}: not a readable config ({err})") from None
    parser = ConfigParser(apply_overrides(raw, parse_overrides(overrides)))
    parser["bundle_root"] = str(root)
    parser["network_def#pretrained"] = None  # the best weights replace the starting ones; nothing to download
    try:
        state = torch.load(str(model), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated zip, pickled objects, random bytes
        raise RunLoadError(f"{model}: not a readable weights file ({type(err).__name__}: {str(err)[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunLoadError(f"{model}: not a state_dict of the run's network")
    net = parser.get_parsed_content("network_def")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RunLoadError(f"{model} does not fit the network of {config}: {str(err)[:300]}") from None
    net = net.to(default_device(device)).eval()
    facts = {k: parser[k] for k in ("task", "num_classes", "spatial_dims", "labels")}
    return net, parser, facts


def evaluate(
    checkpoint: str | os.PathLike,
    datalist: str | os.PathLike,
    section: str = "test",
    batch_size: int = 8,
    device: str | torch.device | None = None,
    amp: bool | str | None = None,
    cases: bool = True,
    corruption: Callable | None = None,
    overrides: Any = None,
) -> dict[str, Any]:
    """Evaluate a run's best weights (``finetune``'s output folder) on one datalist section.

    Args:
        checkpoint: the run folder (or its ``models/model.pt``).
        datalist: MSD-style datalist JSON.
        section: the section evaluated.
        batch_size: evaluation batch size.
        device: default CUDA when available, else CPU.
        amp: ``"auto"`` (``None``), ``"on"``, ``"off"`` or a boolean: CUDA AMP, or on CPU bfloat16 autocast where a
            forward-only probe of this network measures that it pays (``monai_transfer.engines.resolve_precision``).
        cases: include per-case records (``"cases"``: classification ``label``/``prob``, segmentation ``dice``,
            ``hd95_voxels``, ``surface_dice_1voxel`` per foreground class), in the section's order.
        corruption: a dictionary transform inserted where the run's config says corruptions act on what the network
            sees (``validate#corruption_index``: after intensity normalisation) - robustness runs.
        overrides: ``id=value`` changes of the run's saved config (:func:`load_run`).

    Returns:
        ``{"section", "n", <metrics>, "checkpoint", "precision", "environment", ["cases"]}``: ``mean_dice`` for
        segmentation; ``auroc`` (``None`` when the section has one class) and ``accuracy`` (the argmax rule) for
        classification; ``environment``: the machine and versions (:func:`monai_transfer.engines.environment_record`).
        The run's own decision (its validation-chosen threshold, ``models/decision.json``) is applied by
        ``monai-transfer evaluate`` and :func:`monai_transfer.finetune.decision.decided_metrics` on ``cases``.
    """
    from monai.transforms import Compose

    net, parser, facts = load_run(checkpoint, device, overrides)
    task, n_cls = facts["task"], int(facts["num_classes"])
    rows = datalist_cases(datalist, section, task=task, num_classes=n_cls)
    if not rows:
        raise ValueError(f"section {section!r} of {os.fspath(datalist)} is empty")
    xs = list(parser.get_parsed_content("validate#preprocessing#transforms"))
    if corruption is not None:
        xs.insert(int(parser.get("validate#corruption_index", len(xs) - 1)), corruption)
    dev = next(net.parameters()).device
    dims = int(facts["spatial_dims"])
    loader = make_loader(rows, Compose(xs), batch_size, False, cache=False)
    # the probe at the size the network sees: the window or resize of the run, else the first case's size
    size = _parsed(parser, "patch_size") or _parsed(parser, "spatial_size")
    precision = resolve_precision(
        amp,
        dev,
        net,
        dims,
        int(_parsed(parser, "in_channels") or 1),
        size or (sample_size(loader.dataset) if amp in (None, "auto") else None),
        batch_size,
        channels_last=_parsed(parser, "channels_last") or "off",
        training=False,
    )
    key = None
    if task == "classification":
        key = "auroc" if len({int(float(e["label"])) for e in rows}) > 1 else "accuracy"
    inferer = parser.get_parsed_content("validate#inferer")
    inferer = PrecisionInferer(inferer, precision)
    prepare_network(net, {**precision, "compile": False}, dims)  # compiling pays over epochs, not one pass
    evaluator = make_evaluator(net, loader, task, n_cls, dev, inferer, monai_amp(precision), key, collect_cases=True)
    try:
        evaluator.run()
    except RuntimeError as err:  # a data check's own message (the file named), not MONAI's "applying transform"
        raise unwrap_config_error(err) from None
    root = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent.parent
    metrics: dict[str, Any] = {"section": section, "n": len(rows), "checkpoint": str(root / MODEL_FILE),
                               "precision": precision, "environment": environment_record()}  # fmt: skip
    for name, value in evaluator.state.metrics.items():
        metrics[name] = float(value)
    if task == "classification":
        metrics.setdefault("auroc", None)
    if cases:
        metrics["cases"] = evaluator.case_collector.cases
    return metrics


def _parsed(parser: Any, cid: str) -> Any:
    """A config value, ``None`` when the config (an older run's) has no such id."""
    return parser.get_parsed_content(cid) if cid in parser else None
