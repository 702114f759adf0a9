"""``pretrain``: one self-supervised run, from its options to published encoder weights, as a MONAI bundle config.

:func:`resolve_config` fills every option the user left unset with the method's recommended value;
:func:`~monai_transfer.ssl.bundle_config.pretrain_config` builds the run's bundle config from it; :func:`pretrain`
(or :func:`run_pretrain_config`, for a saved or hand-written config) applies ``--set`` overrides and runs it with
MONAI's ``ConfigWorkflow``. Writes into ``out`` only:

* ``configs/pretrain.json`` (+ ``metadata.json``): the config that ran (``python -m monai.bundle run`` repeats it);
  ``config.yaml``: the resolved options;
* ``checkpoints/last.pt`` (+ ``last.prev.pt``, ``last.json``): atomic training checkpoints for exact resume;
* ``encoder.pt``: the encoder's weights with a provenance record (its intensity mapping as data);
* ``result.json``: losses per epoch, kNN monitor history, warnings, timings; ``loss.png``: the loss curve;
* ``tensorboard/`` (and an MLflow run when ``mlflow_uri`` is set); ``bundle/``: a fine-tuning bundle of the encoder,
  when the config has the bundle layer's step (``monai_transfer.bundle.templates.pretrain.pretrain_config``: the
  command line's ``pretrain``), not from :func:`pretrain`.

Everything is built and checked before training starts; a run that fails there leaves ``out`` as it found it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.engines.specs.pretrain import PretrainSpec
from monai_transfer.engines.threads import cpu_threads
from monai_transfer.ssl.bundle_config import CONFIG_NAME, PATH_FIELDS, SCHEDULE_DEFAULTS, resolve_config

__all__ = ["pretrain", "run_pretrain_config", "resolve_config", "PATH_FIELDS", "SCHEDULE_DEFAULTS"]


#: the outputs of a run, removed by ``overwrite`` before a new run starts in the same folder (nothing else is)
_OUTPUTS = ("checkpoints", "tensorboard", "bundle", "encoder.pt", "result.json", "loss.png", "config.yaml",
            f"configs/{CONFIG_NAME}", "configs/metadata.json", "identity.json", ".result.json*", ".encoder.pt*",
            ".identity.json*")  # fmt: skip

#: config ids that do not determine a pretraining run's result (how it resumes, where it runs, how fast it loads
#: and how often it saves; paths whose content is in the identity instead, or that only say where; the provenance's
#: copy of the options, which repeats the top-level values and the switches above)
NOT_IDENTITY: tuple[str, ...] = (
    "resume", "num_workers", "device", "channels_last", "compile", "bundle_root", "datalist", "network_def#pretrained",
    "checkpoint_every", "keep_previous_checkpoint", "provenance#extra#pretraining_config", "provenance#notes",
)  # fmt: skip

#: handlers that only report (left out of the comparison)
REPORTING_HANDLERS: tuple[str, ...] = ("TensorBoardStatsHandler", "MLFlowHandler", "LossProgressBar")

#: config id -> whether a change of it may go on in a resumed run (logged, recorded in ``identity.json``): more
#: epochs extend a run (``ssl.resume.resume`` keeps the trainer's ``max_epochs``)
SAFE_CHANGES: dict[str, Any] = {
    "epochs": lambda old, new: isinstance(old, int) and isinstance(new, int) and new > old,
}


def _metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/metadata.json`` of a pretraining run (MONAI reads it into ``_meta_``)."""
    import monai
    import numpy
    import torch

    from monai_transfer import __version__

    method = raw.get("method", {}).get("name", "?") if isinstance(raw.get("method"), Mapping) else "?"
    backbone = raw.get("network_def", {}).get("name", "?") if isinstance(raw.get("network_def"), Mapping) else "?"
    return {
        "version": "0.1.0",
        "changelog": {"0.1.0": "pretraining run"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"monai_transfer": __version__},
        "name": f"{method} pretraining of {backbone}",
        "task": "self-supervised pretraining",
        "description": f"{method} self-supervised pretraining of a {backbone} encoder (monai_transfer)",
        "authors": "",
        "copyright": "",
    }


def _snapshot(out: Path) -> tuple[bool, set[Path], bytes | None]:
    saved = out / "configs" / CONFIG_NAME
    existing = set(out.rglob("*")) if out.exists() else set()
    return out.exists(), existing, saved.read_bytes() if saved.is_file() else None


def _undo(out: Path, snapshot: tuple[bool, set[Path], bytes | None]) -> None:
    """Remove what a run that failed before training wrote into ``out`` (and ``out`` itself if it made it)."""
    existed, before, saved = snapshot
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in sorted(set(out.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if saved is not None:
        (out / "configs" / CONFIG_NAME).write_bytes(saved)


def _plain(value: Any) -> Any:
    return value if isinstance(value, str) and value and value[0] not in "$@%" else None


def _identity(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the pretraining run's result depends on (``identity.json``): its config without :data:`NOT_IDENTITY`
    and the reporting handlers, the content of its data and starting weights, the package version."""
    from monai_transfer.engines.run_identity import result_settings, run_identity

    net = raw.get("network_def") if isinstance(raw.get("network_def"), Mapping) else {}
    settings = result_settings(raw, NOT_IDENTITY, REPORTING_HANDLERS)
    return run_identity(settings, _plain(raw.get("datalist")), _plain(net.get("pretrained")))


def _refuse_or_clear(
    out: Path, resume: Any, overwrite: bool, raw: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Check the folder before the run: refuse a run there (neither resumed nor overwritten), clear it under
    ``overwrite`` once the new run's data are readable, and under ``resume="auto"`` refuse a run of other settings or
    data (named) or whose checkpoint is gone. Returns the safe changes a resumed run accepted, and the result of a
    finished run of the same identity whose resume checkpoint was removed (kept as it is), else ``None``."""
    from monai_transfer.engines.run_identity import check_identity, read_identity, remove_outputs
    from monai_transfer.utils.distributed import is_main_process

    last = out / "checkpoints" / "last.pt"
    outputs = [p.name for p in (last, out / "encoder.pt", out / "result.json") if p.is_file()]
    if resume is not None:
        if str(resume) != "auto":
            return {}, None
        if not last.is_file():
            if not outputs:
                return {}, None
            if outputs == ["encoder.pt", "result.json"] and read_identity(out) is not None:
                check_identity(out, _identity(raw), True, what="pretraining run")  # finished: no change at all
                return {}, json.loads((out / "result.json").read_text())
            raise FileExistsError(
                f"{out} holds a pretraining run ({', '.join(outputs)}) without its checkpoint "
                "(checkpoints/last.pt), so it can be neither continued nor checked; start again with --overwrite"
            )
        return check_identity(out, _identity(raw), False, SAFE_CHANGES, what="pretraining run"), None
    if not outputs:
        return {}, None
    if not overwrite:
        raise FileExistsError(
            f"{out} holds a pretraining run ({outputs[0]}); continue it with --resume auto, choose another --out, or "
            f"replace it with --overwrite"
        )
    datalist = _plain(raw.get("datalist"))
    if datalist is not None:  # a bad --data must not cost the old run
        from monai_transfer.ssl.images import load_images

        load_images(datalist, raw.get("data_section"))
    if is_main_process():
        remove_outputs(out, _OUTPUTS)
    return {}, None


def _check_batch(raw: Mapping[str, Any]) -> None:
    """A batch size the config's method cannot learn from is refused before anything runs (a hand-written or saved
    config: ``pretrain`` checked its options already)."""
    from monai_transfer.ssl.checks import check_batch_size

    method, batch = raw.get("method"), raw.get("batch_size")
    if not isinstance(method, Mapping) or not _plain(method.get("name")) or not isinstance(batch, int):
        return
    reserved = ("_target_", "name", "seed", "backbone", "device")
    try:
        check_batch_size(method["name"], batch, {k: v for k, v in method.items() if k not in reserved})
    except KeyError:  # an unknown method is named when the config builds it
        return


def run_pretrain_config(
    config: Mapping[str, Any] | str | os.PathLike,
    out: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    options: PretrainSpec | None = None,
    overwrite: bool | None = None,
) -> dict[str, Any]:
    """Run a pretraining bundle config (a dict or a file; ``out`` replaces its ``bundle_root``) and return the run's
    summary (``result.json``).

    ``options`` (the run's ``PretrainSpec``, when it was built from one) is saved as ``config.yaml``. A folder that
    holds a run is refused unless the config resumes it or ``overwrite`` (default: ``options.resume`` is
    ``"overwrite"``) is set.

    The config is saved as ``<out>/configs/pretrain.json`` and run by MONAI's ``ConfigWorkflow``. Everything is
    built and checked before training; a run that fails there leaves ``out`` as it found it.
    """
    import yaml

    from monai_transfer.engines.run_identity import write_identity
    from monai_transfer.engines.workflow import (
        apply_overrides,
        load_config,
        parse_overrides,
        run_config,
        unwrap_config_error,
    )
    from monai_transfer.utils.atomic import atomic_write_text
    from monai_transfer.utils.distributed import is_main_process

    raw = load_config(config)
    sets = parse_overrides(overrides)
    if out is not None:
        sets = {"bundle_root": os.fspath(out), **sets}
    folder = Path(str(sets.get("bundle_root", raw.get("bundle_root", "."))))
    if overwrite is None:
        overwrite = bool(options is not None and options.resume == "overwrite")
    merged = apply_overrides(raw, sets)  # a bad id is named before anything is touched
    _check_batch(merged)
    changes, done = _refuse_or_clear(folder, merged.get("resume"), overwrite, merged)
    if done is not None:
        return done
    snapshot = _snapshot(folder)
    try:
        if is_main_process():
            write_identity(folder, _identity(merged), changes)
        run = run_config(raw, folder, overrides=sets, name=CONFIG_NAME, meta=_metadata(raw), run=False)  # + checks
        run.get("train#resume")  # every component built, and the checkpoint to resume from loaded, before training
        if options is not None and is_main_process():
            # repeating the run must not wipe it
            values = {**options.to_dict(), "resume": "never" if options.resume == "overwrite" else options.resume}
            atomic_write_text(folder / "config.yaml", yaml.safe_dump(values, sort_keys=False))
    except BaseException as err:
        _undo(folder, snapshot)
        raise unwrap_config_error(err) from None
    try:
        run.workflow.run()
    except BaseException as err:
        raise unwrap_config_error(err) from None
    finally:
        run.workflow.finalize()
    result = dict(run.get("train#publish").result)
    if changes:  # the safe changes this resumed run accepted (more epochs), said in the log and recorded
        result["resumed_with_changes"] = changes
        if is_main_process() and (folder / "result.json").is_file():
            from monai_transfer.utils.atomic import atomic_write_json

            saved = json.loads((folder / "result.json").read_text())
            atomic_write_json(folder / "result.json", {**saved, "resumed_with_changes": changes})
    return result


def pretrain(
    config: PretrainSpec | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Pretrain a backbone with a self-supervised method; save its encoder with provenance.

    Runs the same way in one process and under ``torchrun`` (one process per device; ranks share the work, rank 0
    writes the outputs). A run killed at any point continues exactly with ``resume="auto"``.

    Args:
        config: a ``PretrainSpec`` or a mapping of its fields.
        overrides: ``id=value`` settings of the bundle config (``["epochs=3", "train#chance#patience=5"]``).
        fields: fields that replace those of ``config`` (``None`` values are ignored).

    Returns:
        The summary also written to ``<out>/result.json``.
    """
    if config is None:
        config = PretrainSpec()
    elif isinstance(config, Mapping):
        config = PretrainSpec.from_mapping(config)
    from monai_transfer.ssl.bundle_config import pretrain_config

    config = resolve_config(config.merged(fields))
    with cpu_threads(config.threads):
        return run_pretrain_config(pretrain_config(config), config.out_dir, overrides, options=config)
