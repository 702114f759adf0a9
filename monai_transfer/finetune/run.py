"""A whole fine-tuning run: its bundle config built from arguments, run by MONAI's ``ConfigWorkflow``, summarised.

>>> from monai_transfer.data import make_demo_data
>>> paths = make_demo_data("demo", n_subjects=12, size=32)
>>> result = finetune("resnet10", None, "segmentation", "llrd", label_fraction=0.5, seed=0,
...                   datalist=paths["tissue_seg_2d"], out_dir="runs/llrd_0.5", epochs=5)
>>> evaluate("runs/llrd_0.5", paths["tissue_seg_2d"], section="test")["mean_dice"]

Files written (only under ``out_dir``): ``configs/train.json`` (the resolved config that ran: re-run it with
``python -m monai.bundle run --config_file configs/train.json``), ``models/model.pt`` (best weights, a bare
``state_dict``), ``checkpoints/last.pt`` (exact resume), ``result.json``, ``test_cases.json`` when a test section
exists, ``tensorboard/``, and ``identity.json`` (before training: what the result depends on, see
:mod:`monai_transfer.engines.run_identity`). Each file is written atomically.

``resume="auto"`` continues a run only when its identity is unchanged (the settings of :data:`NOT_IDENTITY` and
the declared :data:`SAFE_CHANGES` aside); ``resume="overwrite"`` removes every output of :data:`RUN_OUTPUTS` once
the new run's inputs have been checked, and nothing else.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_transfer.engines import specs
from monai_transfer.engines.checkpoint import RunExistsError
from monai_transfer.engines.environment import environment_record
from monai_transfer.engines.run_identity import (
    IDENTITY_NAME,
    check_identity,
    read_identity,
    remove_outputs,
    result_settings,
    run_identity,
    write_identity,
)
from monai_transfer.engines.specs import FinetuneSpec, value_ids
from monai_transfer.engines.threads import cpu_threads
from monai_transfer.engines.workflow import ConfigRun, apply_overrides, load_config, parse_overrides, run_config
from monai_transfer.finetune.cases import section_names
from monai_transfer.finetune.decision import (
    decide,
    decided_metrics,
    decision_settings,
    read_decision,
    write_decision,
)
from monai_transfer.finetune.evaluate import MODEL_FILE, evaluate
from monai_transfer.finetune.plan import plan_finetune
from monai_transfer.finetune.trainer import AtomicBestCheckpoint
from monai_transfer.utils.atomic import atomic_write, atomic_write_json

__all__ = [
    "finetune",
    "finetune_spec",
    "finetune_config_run",
    "evaluate",
    "RESULT_NAME",
    "RUN_OUTPUTS",
    "NOT_IDENTITY",
    "SAFE_CHANGES",
    "summarize_run",
]

logger = logging.getLogger(__name__)

RESULT_NAME = "result.json"
_RESUME = ("never", "auto", "overwrite")

#: everything the package writes into a fine-tuning run folder (the run itself, ``bundle_from_run``, the study's
#: per-cell records, an ``infer``/``robustness`` run pointed at ``RUN/predictions`` / ``RUN/robustness``): what
#: ``overwrite`` removes. Anything else in the folder is the user's and stays.
RUN_OUTPUTS: tuple[str, ...] = (
    "configs/train.json", "configs/metadata.json", "configs/evaluate.json", "configs/inference.json",
    "models", "checkpoints", "eval", "tensorboard", "bundle", "predictions", "robustness",
    RESULT_NAME, "test_cases.json", IDENTITY_NAME, "precision.json", "run.log", "logs",
    f".{RESULT_NAME}*", ".test_cases.json*", f".{IDENTITY_NAME}*",  # temporary files of a killed atomic write
)  # fmt: skip

#: config ids that do not determine a run's result: how it resumes, where it runs, how fast it loads and reports,
#: and paths whose content is in the identity instead (``datalist``, ``pretrained``) or that only say where
#: (``bundle_root``, ``dataset_dir``: a moved run or data folder is the same run)
NOT_IDENTITY: tuple[str, ...] = (
    "resume", "num_workers", "train#dataloader#num_workers", "validate#dataloader#num_workers", "device",
    "channels_last", "compile", "bundle_root", "dataset_dir", "datalist", "pretrained", "print_config",
)  # fmt: skip

#: handlers that only report (removed from handler lists before the comparison)
REPORTING_HANDLERS: tuple[str, ...] = ("TensorBoardStatsHandler", "ProgressBar", "MLFlowHandler")

#: config id -> whether a change of it may go on in a resumed (unfinished) run: it is logged and recorded in
#: ``result.json`` (``resumed_with_changes``); any other change is refused
SAFE_CHANGES: dict[str, Any] = {
    "train#trainer#max_epochs": lambda old, new: isinstance(old, int) and isinstance(new, int) and new > old,
    "patience": lambda old, new: True,
}


#: what ``finetune(...)`` reads from positional arguments, in order (``finetune("resnet10", None, "segmentation")``)
POSITIONAL = ("backbone", "pretrained", "task", "strategy")


def finetune_spec(*args: Any, **settings: Any) -> FinetuneSpec:
    """A checked :class:`~monai_transfer.engines.specs.FinetuneSpec` from a spec (with ``settings`` replacing some of
    its fields) or from :data:`POSITIONAL` arguments and keyword settings.

    Raises:
        SpecFieldError: an unknown setting (the closest known one named) or a bad value (its field named).
    """
    return specs.spec_class("finetune").from_arguments(args, settings, POSITIONAL, "finetune")


def finetune(*args: Any, print_config: bool = False, **settings: Any) -> dict[str, Any]:
    """Fine-tune a (pretrained) backbone on a datalist: build the run's bundle config, run it, report the result.

    Training is MONAI's ``SupervisedTrainer`` validated every epoch by a ``SupervisedEvaluator`` (mean Dice, or
    AUROC and accuracy), with the strategy's parameter groups, warm-up + cosine learning rates, the starting point's
    intensity mapping, early stopping, the best weights written atomically to ``models/model.pt``, an exact-resume
    checkpoint every epoch and TensorBoard logs. The best weights are then evaluated on ``test_section``.

    The settings are the fields of :class:`~monai_transfer.engines.specs.FinetuneSpec` (their help says what each
    does): give a spec, or settings by name (``backbone``, ``pretrained``, ``task``, ``strategy`` also by position).
    The main ones:

    - ``backbone`` (registry name), ``pretrained`` (``None``: random init; a checkpoint, bundle folder or source
      name), ``task`` (``"classification"`` or ``"segmentation"``), ``strategy`` (``list_strategies()`` name or a
      built strategy), ``datalist`` (MSD-style JSON with training and validation sections), ``out_dir``;
    - ``label_fraction`` (the nested, class-stratified, patient-level subset for ``seed``), ``seed``, ``epochs``,
      ``batch_size``, ``lr``... (the values of config ids ``train#trainer#max_epochs``, ``batch_size``, ``lr``);
    - ``resume``: an earlier run in ``out_dir``: ``"never"`` refuses it (``RunExistsError``), ``"auto"`` continues it
      (a finished run is returned as it is), ``"overwrite"`` starts again;
    - ``overrides``: ``id=value`` strings or a mapping applied to the config last (``--set``): any value reachable;
    - ``test_section``: the section the best weights are evaluated on (``None``: none);
    - ``amp``, ``channels_last``, ``compile`` (``"auto"``/``"on"``/``"off"``:
      :func:`monai_transfer.engines.resolve_precision`), ``threshold``, ``calibrate``, ``one_vs_rest``.

    ``print_config=True`` returns the config that would run and writes nothing.

    Returns:
        The result (also ``out_dir/result.json``): best metric and epoch, epochs run, test metrics, the precision
        decision (``precision``: amp, dtype, layout, compile and why), the load report
        of ``pretrained``, the intensity used, sizes of the sets, the config file, the run's values, ``duration_s``.

    Raises:
        SpecFieldError / ValueError / DatalistError: a bad setting or datalist (the field, case or file named), before
            anything is written.
        RunExistsError: ``out_dir`` holds a run and ``resume="never"``.
    """
    spec = finetune_spec(*args, **settings)
    with cpu_threads(spec.threads):
        return _run(spec, print_config)


def _run(spec: FinetuneSpec, print_config: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    out_dir, resume, datalist, test_section = spec.out_dir, spec.resume, spec.datalist, spec.test_section
    out = Path(out_dir).resolve() if out_dir else Path()
    _refuse_existing(out, resume)
    # how the test section is decided and calibrated (chosen on validation): checked before anything trains
    decision = decision_settings(spec.threshold, spec.calibrate, spec.one_vs_rest)
    plan = plan_finetune(spec, decision)
    user = parse_overrides(spec.overrides)
    raw = apply_overrides(plan.config, user)  # a bad --set id is named here, before anything is written
    decision = _config_decision(raw, decision)  # --set threshold=f1 counts as --threshold f1
    if print_config:  # the config that would run, nothing written
        return raw
    identity = _identity(raw, datalist, spec.pretrained)
    identity["settings"]["decision"] = decision  # the test's threshold rule and calibration determine its metrics
    done, changes = _prepare_folder(out, resume, identity)
    if done is not None:
        return done
    before = set(os.listdir(out)) if out.is_dir() else None
    try:
        write_identity(out, identity, changes)
        run = run_config(raw, out, name="train.json", workflow_type="train")
    except BaseException:
        _clean_failed_start(out, before)
        raise
    result = summarize_run(run, {**plan.facts, **_values_ran(run, plan.facts)}, out)
    if test_section and plan.facts["n_test"]:
        result["test"] = _test(
            out, datalist, test_section, plan.facts["labels"], int(result["batch_size"]), spec.device,
            result["precision"], spec.val_section, **decision,
        )  # fmt: skip
        result["decision"] = read_decision(out)
    if changes:
        result["resumed_with_changes"] = changes
    result.update(overrides=user, duration_s=round(time.perf_counter() - t0, 3))
    atomic_write_json(out / RESULT_NAME, _json_safe(result))
    return result


def finetune_config_run(
    config: str | os.PathLike | Mapping[str, Any],
    out_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    resume: str = "never",
    test_section: str | None = "test",
) -> dict[str, Any]:
    """Run a fine-tuning bundle config (a saved ``configs/train.json``, or a bundle's) with ``out_dir`` as its
    ``bundle_root``, then evaluate its best weights on ``test_section`` of its datalist when it has one.

    ``resume`` as in :func:`finetune`: ``"auto"`` continues a run of the same identity only, ``"overwrite"`` removes
    the folder's run outputs first."""
    t0 = time.perf_counter()
    if resume not in _RESUME:
        raise ValueError(f"resume must be one of {_RESUME}, got {resume!r}")
    out = Path(out_dir).resolve()
    _refuse_existing(out, resume)
    user = {"bundle_root": str(out), "resume": resume, **parse_overrides(overrides)}
    raw = apply_overrides(load_config(config), user)
    datalist_file = _plain_path(raw.get("datalist"))
    if datalist_file is not None:  # readable before an overwrite removes the old run
        from monai_transfer.data.datalist import load_datalist_file

        load_datalist_file(datalist_file)
    identity = _identity(raw, datalist_file, _plain_path(raw.get("pretrained")))
    done, changes = _prepare_folder(out, resume, identity)
    if done is not None:
        return done
    before = set(os.listdir(out)) if out.is_dir() else None
    try:
        write_identity(out, identity, changes)
        run = run_config(raw, out, name="train.json", workflow_type="train")
    except BaseException:
        _clean_failed_start(out, before)
        raise
    n_train = len(run.get("train#dataset"))
    facts = {"task": run.get("task"), "labels": run.get("labels"), "label_fraction": run.get("label_fraction"),
             "seed": run.get("seed"), "n_train": n_train, "n_train_total": n_train, "datalist": run.get("datalist"),
             "pretrained": run.get("pretrained") if "pretrained" in run.workflow.parser else None}  # fmt: skip
    result = summarize_run(run, facts, out)
    datalist = facts["datalist"]
    if test_section and isinstance(datalist, str) and test_section in section_names(datalist):
        result["test"] = _test(
            out, datalist, test_section, facts["labels"], int(run.get("batch_size")), None, result["precision"],
            **_config_decision(raw, {}),
        )  # fmt: skip
        result["decision"] = read_decision(out)
    if changes:
        result["resumed_with_changes"] = changes
    result.update(overrides=user, duration_s=round(time.perf_counter() - t0, 3))
    atomic_write_json(out / RESULT_NAME, _json_safe(result))
    return result


def _plain_path(value: Any) -> Any:
    """A config value that names a path as it is (not a ``$`` expression or an ``@`` reference)."""
    return value if isinstance(value, str) and value and value[0] not in "$@%" else None


def _identity(raw: Mapping[str, Any], datalist: Any, pretrained: Any) -> dict[str, Any]:
    """What the run's result depends on: the config that runs (without :data:`NOT_IDENTITY` and the reporting
    handlers), the content of its data and starting weights, the package version."""
    return run_identity(result_settings(raw, NOT_IDENTITY, REPORTING_HANDLERS), datalist, pretrained)


def _values_ran(run: ConfigRun, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The run's values (``lr``, ``warmup_epochs``, ``epochs``...) as the config that ran resolved them, after
    ``--set`` overrides (``result.json`` records what took effect, not the function's arguments)."""
    out = {}
    for arg, cid in value_ids(specs.spec_class("finetune")).items():
        try:
            out[arg] = run.get(cid)
        except Exception:  # an id a hand-edited config lacks: the argument's value
            out[arg] = facts.get(arg)
    return out


def _refuse_existing(out: Path, resume: str) -> None:
    """``resume="never"`` refuses a folder that holds a run."""
    if resume == "never" and ((out / "checkpoints" / "last.pt").is_file() or (out / RESULT_NAME).is_file()):
        raise RunExistsError(
            f"{out} holds a fine-tuning run already. Continue it with `--resume auto` (resume='auto'), or start "
            "again and replace it with `--overwrite` (resume='overwrite')."
        )


def _prepare_folder(out: Path, resume: str, identity: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict]:
    """Called once the new run's inputs are checked: under ``"overwrite"`` remove the old run's outputs; under
    ``"auto"`` check the folder's run against the new identity and return a finished run's result (unchanged runs
    only) and the safe changes accepted.

    Raises:
        RunChangedError: the folder's run has other settings, data, weights or package version (named).
        RunExistsError: the folder holds a run's results but not its checkpoint (it can be neither continued nor
            checked; training again would silently replace its model).
    """
    from monai_transfer.engines.checkpoint import prev_path

    if resume == "overwrite":
        removed = remove_outputs(out, RUN_OUTPUTS) if out.is_dir() else []
        if removed:
            logger.info("%s: removed the earlier run's %s", out, ", ".join(removed))
        return None, {}
    if resume != "auto":
        return None, {}
    last, result, model = out / "checkpoints" / "last.pt", out / RESULT_NAME, out / MODEL_FILE
    if not last.is_file() and not prev_path(last).is_file():
        found = [p.relative_to(out).as_posix() for p in (model, result) if p.is_file()]
        if not found:
            return None, {}
        if result.is_file() and read_identity(out) is not None:
            # finished, its resume state removed (a study drops it): kept as it is when nothing changed
            check_identity(out, identity, True, what="fine-tuning run")
            logger.info("%s holds a finished run (its resume checkpoint removed); its result is returned as it is", out)
            return json.loads(result.read_text()), {}
        raise RunExistsError(
            f"{out} holds a fine-tuning run ({' and '.join(found)}) without its checkpoint (checkpoints/last.pt), "
            "so it can be neither continued nor checked; start again with --overwrite (resume='overwrite')."
        )
    finished = result.is_file() and last.is_file()
    legacy = _legacy_identity(out)
    changes = check_identity(out, identity, finished, SAFE_CHANGES, what="fine-tuning run", legacy=legacy)
    if finished:
        logger.info("%s holds a finished run; its result is returned as it is", out)
        return json.loads(result.read_text()), {}
    return None, changes


def _legacy_identity(out: Path) -> dict[str, Any] | None:
    """A run written before ``identity.json`` existed: its saved ``configs/train.json`` (settings only)."""
    saved = out / "configs" / "train.json"
    try:
        return {"settings": result_settings(json.loads(saved.read_text()), NOT_IDENTITY, REPORTING_HANDLERS)}
    except (OSError, ValueError):
        return None


def _config_decision(raw: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A classifier's decision settings as its config holds them (ids ``threshold``, ``calibrate``, ``one_vs_rest``),
    checked; ``given`` where the config has none (segmentation, or a config written before they were ids)."""
    return decision_settings(raw.get("threshold", given.get("rule")), raw.get("calibrate", given.get("calibrate")),
                             raw.get("one_vs_rest", given.get("one_vs_rest")))  # fmt: skip


def _test(
    out: Path, datalist: Any, section: str, labels: Any, batch_size: int, device: Any, precision: Any = None,
    val_section: str = "validation", rule: Any = "youden", calibrate: str = "none", one_vs_rest: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The best weights on the test section, decided as chosen on the validation section; per-case records (named by
    case id) to ``test_cases.json``, the decision to ``models/decision.json`` (:mod:`monai_transfer.finetune.decision`).

    The test runs in the training run's precision (``amp`` on or off as it was decided), without a second probe."""
    amp = None if not isinstance(precision, dict) else bool(precision.get("amp"))
    test = evaluate(out, datalist, section=section, batch_size=batch_size, device=device, amp=amp)
    cases = _named_cases(test.pop("cases", None), datalist, section, labels)
    atomic_write_json(out / "test_cases.json", {"section": section, "labels": labels, "cases": cases})
    if not cases:
        return test
    if "prob" in cases[0]:
        val = evaluate(out, datalist, section=val_section, batch_size=batch_size, device=device, amp=amp)
        chosen = decide(val["cases"], rule, calibrate, one_vs_rest)
        write_decision(out, {**chosen, "validation_section": val_section})
    else:
        chosen = {}
    return {**test, **decided_metrics(cases, chosen, out)}


def _clean_failed_start(out: Path, before: set[str] | None) -> None:
    """A run that failed before its first epoch ended leaves nothing behind (what existed before stays)."""
    import shutil

    if (out / "checkpoints" / "last.pt").is_file() or not out.is_dir():
        return  # an epoch finished: its checkpoint is worth keeping (resume it)
    for name in set(os.listdir(out)) - (before or set()):
        path = out / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    if before is None and not any(out.iterdir()):
        out.rmdir()


def summarize_run(run: ConfigRun, facts: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """The result of a finished training run: best metric and epoch, epochs run, load report, notes."""
    trainer = run.get("train#trainer")
    best = next(h for h in run.get("validate#handlers") if isinstance(h, AtomicBestCheckpoint))
    net = run.get("network")
    if best.best_metric is None:
        # every validation metric was NaN: keep the last weights so that the run still has a model
        logger.warning("no finite validation %s; saving the last epoch's weights", best.metric_name)
        state = {k: v.detach().cpu() for k, v in getattr(net, "module", net).state_dict().items()}
        with atomic_write(out / MODEL_FILE) as tmp:
            torch.save(state, tmp)
    report = getattr(getattr(getattr(net, "module", net), "backbone", None), "load_report", None)
    if report is not None:
        logger.info("pretrained weights loaded:\n%s", report.to_table())
    epochs_run = int(trainer.state.epoch)
    notes = []
    if best.best_epoch is not None and best.best_epoch == epochs_run:
        notes.append(f"the best {best.metric_name} came at the last epoch ({epochs_run}): training may not have "
                     "levelled off; more epochs could help")  # fmt: skip
    frac = facts.get("label_fraction")
    if frac is not None and abs(facts["n_train"] - facts["n_train_total"] * float(frac)) > 1:
        notes.append(f"label_fraction {facts['label_fraction']} kept {facts['n_train']} of {facts['n_train_total']} "
                     "training cases (one per class at least, whole patients)")  # fmt: skip
    return {
        "best_metric": best.best_metric,
        "best_metric_name": best.metric_name,
        "best_epoch": best.best_epoch,
        "epochs_run": epochs_run,
        "test": None,
        "model": str(out / MODEL_FILE),
        "config_file": str(run.config_file),
        "result_json": str(out / RESULT_NAME),
        "out_dir": str(out),
        # the run's amp / layout / compile decision and why (monai_transfer.engines.resolve_precision)
        "precision": _precision(run),
        "environment": environment_record(),  # CPU, threads, versions: what the same numbers need (docs/finetune.md)
        "load_report": None if report is None else report.to_dict(),
        "load_report_table": None if report is None else report.to_table(),
        "notes": notes,
        **dict(facts),
    }


def _precision(run: ConfigRun) -> dict[str, Any] | None:
    """The run's precision decision; ``None`` for a config written before it had one."""
    return dict(run.get("precision")) if "precision" in run.workflow.parser else None


def _named_cases(cases: list[dict[str, Any]] | None, datalist: Any, section: str, labels: Any) -> list[dict[str, Any]]:
    """Per-case records with the case's id (its file name, never a local path), patient and class names."""
    from monai_transfer.data.case_ids import name_cases
    from monai_transfer.data.datalist import load_datalist

    rows = load_datalist(datalist, section, required_keys=("image",))
    return name_cases(cases or [], rows, labels)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
