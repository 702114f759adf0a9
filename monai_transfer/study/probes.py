"""Linear-probe cells on cached encoder features: one encoder pass per (target, starting point, backbone), then a
linear head per cell on those features instead of a whole ``finetune`` run.

A linear probe trains only the head on a frozen encoder kept in eval mode (:class:`monai_transfer.finetune.LinearProbe`),
so the encoder's pooled features of a case never change during the run: computing them once and training the head on
them is the same model, without decoding, normalising and encoding every case every epoch of every cell.

What stays the pipeline's own, so that a cached probe and a pipeline probe differ only where they must:

* the features: the cell's ``finetune`` config is planned (:func:`monai_transfer.finetune.plan.plan_finetune`, spec
  options and ``overrides`` applied) and its evaluation transforms (``validate#preprocessing``: the starting point's
  intensity mapping, the resize) and ``network_def`` (starting weights loaded strictly) are instantiated from it; the
  pooled features come from :func:`monai_transfer.evaluation.rank.extract_features` (eval mode, no augmentation);
* the head, its initialisation (seeded by the cell's seed), the strategy's parameter groups, AdamW, the loss, the
  warm-up + cosine schedule (:class:`monai_transfer.engines.WarmupCosineHandler`), the per-epoch order of the
  training cases (:func:`monai_transfer.engines.sampling.epoch_permutation`) and the last-batch rule: the config's;
* selection: the best epoch by the validation key metric (a NaN never counts), early stopping with ``patience``;
* scoring: MONAI's ``SupervisedEvaluator`` with the task's metrics (:func:`monai_transfer.finetune.trainer.make_evaluator`:
  ``ROCAUC``, ignite's ``Accuracy``), as ``evaluate`` scores the test section.

What differs: no training-time flips (the features are of the unflipped images), and nothing is written but the
feature file and the results row (no run folder, so no bundle can be made from a cached probe; see
``runner._best_bundles``).

The features of every case of the target (all sections, so that every challenge's subsets and domain splits find
theirs) are written atomically to ``<out>/features/<target>/<start>__<backbone>.npz``; a random start's encoder depends
on the cell's seed, so its file is per seed (``<start>__<backbone>__seed<k>.npz``). Each file holds a fingerprint of
what made it (weights, transforms, cases); a file that does not match, or cannot be read, is computed again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = [
    "uses_cached_probe",
    "features_path",
    "cell_config",
    "ensure_features",
    "run_probe_cell",
]

_FORMAT = 1  # bump when the file's layout or the fingerprint's contents change


def uses_cached_probe(spec: Any, cell: Any) -> bool:
    """A cell runs as a cached probe: the spec asks for it, the strategy is ``linear-probe`` and the target is a
    classification (a segmentation probe trains a decoder over feature maps: it keeps the pipeline)."""
    return (getattr(spec, "linear_probe", "cached") == "cached" and cell.strategy == "linear-probe"
            and cell.target.task == "classification")  # fmt: skip


def features_path(out: str | os.PathLike, target: str, start: str, backbone: str, seed: int | None) -> Path:
    """Where the features of (target, start, backbone) live; ``seed`` only for a start whose encoder it draws."""
    name = f"{start}__{backbone}" + ("" if seed is None else f"__seed{seed}")
    return Path(out) / "features" / target / f"{name}.npz"


def cell_config(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train.json`` the cell's ``finetune`` run would execute (planned, overrides applied), never run."""
    from monai_transfer.engines.workflow import apply_overrides, parse_overrides
    from monai_transfer.finetune.decision import decision_settings
    from monai_transfer.finetune.plan import plan_finetune
    from monai_transfer.study.cell_spec import cell_spec

    spec = cell_spec(payload)
    plan = plan_finetune(spec, decision_settings(spec.threshold, spec.calibrate, spec.one_vs_rest))
    return apply_overrides(plan.config, parse_overrides(spec.overrides))


def _parser(config: Mapping[str, Any]) -> Any:
    from monai.bundle import ConfigParser

    return ConfigParser(copy.deepcopy(dict(config)))


def _key_of(path: str, base: str | os.PathLike | None = None) -> str:
    """A case's identity: its image path, absolute and normalised (datalists store them absolute or relative)."""
    p = path if base is None or os.path.isabs(path) else os.path.join(os.fspath(base), path)
    return os.path.normpath(os.path.abspath(p))


def _fingerprint(config: Mapping[str, Any], images: Sequence[str], seeded: bool) -> str:
    """What the features depend on: the weights (their content for a file or folder), the network's build arguments,
    the evaluation transforms, the cases' content, the seed where it draws the encoder, and the package version."""
    from monai_transfer.utils.identity import package_version, path_digest

    pretrained = config.get("pretrained")
    weights: Any = pretrained
    if isinstance(pretrained, str) and os.path.exists(pretrained):
        weights = path_digest(pretrained)
    net = {k: v for k, v in config["network_def"].items() if k not in ("head_kwargs", "seed")}
    key = {"format": _FORMAT, "weights": weights, "network": net, "spatial_dims": config["spatial_dims"],
           "in_channels": config["in_channels"], "transforms": config["validate"]["preprocessing"],
           "seed": config["seed"] if seeded else None,
           "cases": hashlib.sha256("\n".join(f"{p}\0{_content(p)}" for p in images).encode()).hexdigest(),
           "version": package_version()}  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _content(path: str) -> str:
    from monai_transfer.utils.identity import path_digest

    return path_digest(path) if os.path.exists(path) else ""


def _read_features(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The cached features when ``path`` holds a whole file made the same way; None otherwise (missing, truncated,
    from another spec)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            return {k: z[k] for k in ("features", "images")}
    except Exception:  # noqa: BLE001 - a damaged file is computed again, never trusted
        return None


def _encode(config: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Pooled features of ``entries`` through the config's evaluation transforms and starting network."""
    from monai_transfer.evaluation.rank import extract_features

    parser = _parser(config)
    tf = parser.get_parsed_content("validate#preprocessing")
    net = parser.get_parsed_content("network_def")  # starting weights, strict; the new layers seeded by the cell
    device = parser.get_parsed_content("device")
    batch = int(config["batch_size"])
    out = []
    for i in range(0, len(entries), batch):  # a batch of images in memory at a time, not the whole target
        images = torch.stack([torch.as_tensor(tf(dict(e))["image"]) for e in entries[i : i + batch]])
        out.append(extract_features(net.backbone, images, batch, device).astype(np.float32))
    return np.concatenate(out)


def ensure_features(payload: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
    """Compute (or find) the features of every case in ``entries`` for the payload's (target, start, backbone) and
    return the file's path (``payload["probe"]["features"]``). Written atomically: a killed write leaves only a
    temporary file beside it, which is never read."""
    from monai_transfer.utils.atomic import atomic_write

    probe = payload["probe"]
    path = Path(probe["features"])
    config = cell_config(payload)
    keys = list(dict.fromkeys(_key_of(e["image"]) for e in entries))
    fingerprint = _fingerprint(config, keys, payload["pretrained"] is None)
    if _read_features(path, fingerprint) is not None:
        return str(path)
    by_key = {_key_of(e["image"]): e for e in entries}
    feats = _encode(config, [by_key[k] for k in keys])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=feats, images=np.asarray(keys, dtype=str), fingerprint=np.asarray(fingerprint))
    return str(path)


def _section(datalist: str, name: str) -> list[dict[str, Any]]:
    raw = json.loads(Path(datalist).read_text())
    return [dict(e) for e in raw.get(name) or []]


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Any:
    """Feature vectors as the evaluator's items (``image``: the pooled feature, ``label``: a ``(1,)`` class index)."""
    from monai.data import DataLoader

    items = [{"image": x[i], "label": y[i : i + 1]} for i in range(len(x))]
    return DataLoader(items, batch_size=min(batch_size, len(items)), shuffle=False, num_workers=0)


def _score(head: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_cls: int, key: str, batch: int,
           device: torch.device, cases: bool = False) -> tuple[dict[str, float], Any]:  # fmt: skip
    from monai_transfer.finetune.trainer import make_evaluator

    ev = make_evaluator(head, _loader(x, y, batch), "classification", n_cls, device, None, False, key, cases)
    ev.run()
    return {k: float(v) for k, v in ev.state.metrics.items()}, ev


def _fit_head(config: Mapping[str, Any], parser: Any, head: torch.nn.Module, train: tuple, val: tuple,
              n_cls: int, device: torch.device) -> tuple[int | None, float | None]:  # fmt: skip
    """Train ``head`` as the cell's ``SupervisedTrainer`` would train it on a frozen encoder; leave the best epoch's
    weights in it. Returns (best epoch, best validation key metric)."""
    from monai_transfer.engines.sampling import epoch_permutation

    optimizer = parser.get_parsed_content("optimizer")  # the strategy's groups: only the head is trainable
    loss_fn = parser.get_parsed_content("loss")
    # the warm-up + cosine schedule, found by its component: train#handlers stays a list of components (MONAI Label
    # inserts its loader there), so its place in the list is not an id
    handlers = config["train"]["handlers"]
    at = next(i for i, h in enumerate(handlers) if str(h.get("_target_", "")).endswith(".WarmupCosineHandler"))
    schedule = parser.get_parsed_content(f"train#handlers#{at}")
    key = next(iter(config["validate"]["key_metric"]))
    epochs, bs, seed = int(config["train"]["trainer"]["max_epochs"]), int(config["batch_size"]), int(config["seed"])
    patience = config.get("patience")
    x, y = train
    n = len(x)
    # the loader's rule: full batches and a last one, dropped when it would hold one case (batch norm in heads)
    starts = list(range(0, n, bs))
    if n % bs == 1 and n > 1:
        starts = starts[:-1]
    best_state, best, best_epoch, stale, stop_best = None, None, None, 0, -math.inf
    it = 0
    for epoch in range(1, epochs + 1):
        order = torch.as_tensor(epoch_permutation(n, seed, epoch, True))
        head.train()
        for s in starts:
            it += 1
            schedule(SimpleNamespace(state=SimpleNamespace(iteration=it, epoch_length=len(starts), max_epochs=epochs)))
            idx = order[s : s + bs]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(x[idx].to(device)), y[idx].unsqueeze(1).to(device))
            loss.backward()
            optimizer.step()
        value = _score(head, *val, n_cls, key, bs, device)[0][key]
        if not math.isnan(value) and (best is None or value > best):  # AtomicBestCheckpoint's rule
            best, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        if patience is not None:  # ignite's EarlyStopping over a NaN-safe score
            score = -math.inf if math.isnan(value) else value
            stale = 0 if score > stop_best else stale + 1
            stop_best = max(stop_best, score)
            if stale >= int(patience):
                break
    if best_state is not None:  # else: every validation was NaN; the last weights stay, as finetune keeps them
        head.load_state_dict(best_state)
    return best_epoch, best


def _xy(datalist: str, section: str, feats: np.ndarray, index: Mapping[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached features and class indices of one section of the cell's datalist, matched by image path."""
    base = Path(datalist).parent
    rows = _section(datalist, section)
    missing = [e["image"] for e in rows if _key_of(e["image"], base) not in index]
    if missing:
        raise KeyError(f"{len(missing)} case(s) of section {section!r} have no cached features, e.g. {missing[0]}")
    ids = [index[_key_of(e["image"], base)] for e in rows]
    return torch.from_numpy(feats[ids]), torch.as_tensor([int(float(e["label"])) for e in rows], dtype=torch.long)


def run_probe_cell(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Fit and score one cached linear-probe cell on the features ``ensure_features`` wrote: the test metrics, sizes,
    best epoch and load report that ``runner.run_cell`` turns into the cell's row."""
    from monai_transfer.data.case_ids import name_cases
    from monai_transfer.finetune.decision import decide, decided_metrics, row_metrics

    if payload["probe"].get("error"):
        raise RuntimeError(payload["probe"]["error"])
    config = cell_config(payload)
    # written by the study's process before the cells were sent out (ensure_features); a worker only reads it
    with np.load(payload["probe"]["features"], allow_pickle=False) as z:
        feats, keys = z["features"], [str(k) for k in z["images"]]
    index = {k: i for i, k in enumerate(keys)}
    datalist = payload["datalist"]
    train, val, test = (_xy(datalist, s, feats, index) for s in ("training", "validation", "test"))
    # the head trains on stored float32 features: no precision decision (its probe, its record in the run folder)
    config = {**config, "network": "$@network_def.to(@device)"}
    parser = _parser(config)
    device = parser.get_parsed_content("device")
    net = parser.get_parsed_content("network")  # the head initialised from the cell's seed, as the pipeline's
    head = net.head
    n_cls = int(config["num_classes"])
    best_epoch, _ = _fit_head(config, parser, head, train, val, n_cls, device)
    key = "auroc" if len(set(test[1].tolist())) > 1 else "accuracy"  # evaluate()'s rule for the test section
    bs = int(config["batch_size"])
    metrics, ev = _score(head, *test, n_cls, key, bs, device, cases=True)
    # decided as a fine-tuning run decides: the rule applied on validation, intervals over the test cases
    _, val_ev = _score(head, *val, n_cls, key, bs, device, cases=True)
    opts = dict(payload["finetune"])
    decision = decide(val_ev.case_collector.cases, opts.get("threshold", "youden"), opts.get("calibrate", "none"),
                      bool(opts.get("one_vs_rest", False)))  # fmt: skip
    test_cases = name_cases(ev.case_collector.cases, _section(datalist, "test"), None)
    fields = row_metrics({**metrics, **decided_metrics(test_cases, decision)})
    report = getattr(net.backbone, "load_report", None)
    return {**fields, "n_train": len(train[0]), "n_test": len(test[0]), "best_epoch": best_epoch,
            "decision": decision, "load_report": report.to_dict() if report is not None else {},
            "case_scores": None}  # fmt: skip
