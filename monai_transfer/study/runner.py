"""Run a study: check it, write every cell's data, pretrain the in-study starts, estimate transferability, run the
cells through an executor into the results store, then write the report and the best starting point's bundle.

Each cell is one ``finetune`` bundle run in ``<out>/cells/<cell id>/`` (``resume="auto"``: a cell killed half-way
continues from its checkpoint). Started again with the same command, a study runs only the cells without a row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from monai_transfer.engines.environment import environment_record
from monai_transfer.finetune.decision import row_metrics
from monai_transfer.study.cell_spec import cell_spec
from monai_transfer.study.cells import Cell, expand_cells, write_cell_data
from monai_transfer.study.checks import check_target_images
from monai_transfer.study.console import cell_log, cell_log_path
from monai_transfer.study.identity import (
    cell_identity,
    changed,
    digest,
    read_identity,
    start_identity,
    write_identity,
)
from monai_transfer.study.spec import StudySpec
from monai_transfer.study.starts import resolve_start
from monai_transfer.study.store import ResultsStore
from monai_transfer.utils.atomic import atomic_write_text
from monai_transfer.utils.identity import data_digest, package_version

__all__ = ["run_study", "run_cell", "cell_payload", "StudyStopped", "plan_study"]

logger = logging.getLogger(__name__)


class StudyStopped(RuntimeError):
    """A cell failed and the spec says ``on_error: stop`` (its row is in the store)."""


def cell_payload(cell: Cell, spec: StudySpec, pretrained: str | None, out: str | os.PathLike) -> dict[str, Any]:
    """Everything a worker needs to run one cell, as plain data (it crosses process and Ray boundaries)."""
    t = cell.target
    return {"cell": cell.id, "key": cell.key, "datalist": cell.datalist, "task": t.task, "spatial_dims": t.spatial_dims,
            "in_channels": t.in_channels, "patient_key": t.patient_key, "metric": spec.metric(t),
            "challenge_kind": cell.challenge.kind,
            "challenge_value": cell.challenge.value if cell.challenge.kind != "domain" else cell.challenge.label[7:],
            "start_kind": spec.start(cell.start).kind, "pretrained": pretrained, "backbone": cell.backbone,
            "strategy": cell.strategy, "seed": cell.seed, "finetune": dict(spec.finetune),
            "run_dir": str(Path(out) / "cells" / cell.id)}  # fmt: skip


def _case_scores(run_dir: Path, task: str, patient_key: str | None) -> list[dict[str, Any]] | None:
    """Per-test-case mean Dice (segmentation); classification's ranking metric (AUROC) has no per-case value."""
    path = run_dir / "test_cases.json"
    if task != "segmentation" or not path.is_file():
        return None
    out = []
    for c in json.loads(path.read_text()).get("cases", []):
        dice = [d for d in c.get("dice", []) if d is not None]
        if dice:
            out.append({"case": c.get("id"), "patient": c.get(patient_key or "patient_id") or c.get("id"),
                        "score": float(sum(dice) / len(dice))})  # fmt: skip
    return out


def _base_row(payload: Mapping[str, Any], threads: int) -> dict[str, Any]:
    return {"cell": payload["cell"], "threads": threads, **payload["key"], "task": payload["task"],
            "challenge_kind": payload["challenge_kind"], "challenge_value": payload["challenge_value"],
            "start_kind": payload["start_kind"], "pretrained": payload["pretrained"], "metric": payload["metric"],
            "precision": payload.get("precision"), "score": None, "metrics": {}, "status": "failed", "error": None,
            "run_dir": payload["run_dir"]}  # fmt: skip


def _finetune_cell(payload: Mapping[str, Any]) -> dict[str, Any]:
    """One cell as a whole ``finetune`` bundle run: its test metrics, sizes, best epoch, load report, case scores."""
    from monai_transfer.finetune import finetune

    result = finetune(cell_spec(payload))
    test = result.get("test") or {}
    return {**row_metrics(test), "n_train": result.get("n_train"), "n_test": test.get("n"),
            "best_epoch": result.get("best_epoch"), "load_report": result.get("load_report") or {},
            "decision": result.get("decision"),
            "case_scores": _case_scores(Path(payload["run_dir"]), payload["task"], payload["patient_key"])}  # fmt: skip


def _ok_fields(res: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """A finished cell's row fields; a missing or undefined ranking metric fails the cell."""
    score = res["metrics"].get(metric)
    if score is None:
        raise ValueError(f"the test metrics {sorted(res['metrics'])} have no {metric!r}")
    if score != score:  # NaN: AUROC of a test set holding one class, for example; not a number to average
        raise ValueError(f"test {metric} is undefined on {res['n_test']} test case(s) (one class only?)")
    report = {k: res["load_report"].get(k) for k in ("ok", "source", "loaded_fraction") if k in res["load_report"]}
    kept = {k: res[k] for k in ("metrics", "n_train", "n_test", "best_epoch", "case_scores")}
    ci = res.get("metric_ci") or {}
    return {"status": "ok", "score": float(score), **kept, "load_report": report or None, "metric_ci": ci,
            "score_ci": ci.get(metric), "decision": res.get("decision")}  # fmt: skip


def run_cell(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one cell and return its results row (``status: failed`` with the error instead of raising): a whole
    ``finetune`` run, or for a cached linear probe (``payload["probe"]``) a head trained on its cached features
    (:mod:`monai_transfer.study.probes`)."""
    import torch

    t0 = time.perf_counter()
    threads = int(payload.get("threads") or torch.get_num_threads())
    row = _base_row(payload, threads)
    work = _finetune_cell
    if payload.get("probe"):
        from monai_transfer.study.probes import run_probe_cell

        row.update(probe="cached", features=payload["probe"]["features"], run_dir=None)
        work = run_probe_cell
    previous_threads = torch.get_num_threads()
    # the same thread count everywhere: CPU kernels split their sums by thread, so another count (Ray's workers
    # default to 1) would give other rounding and, over epochs, other results for the same seed
    torch.set_num_threads(threads)
    row["environment"] = environment_record()  # CPU, threads, versions: what the same numbers need (docs/finetune.md)
    try:
        # its log to its own file (payload["log"]); a cell never moves the caller's RNG (cells run in any order)
        with cell_log(payload), torch.random.fork_rng(devices=[]):
            row.update(_ok_fields(work(payload), payload["metric"]))
    except Exception as e:  # the study goes on (or stops, as the spec says): the row keeps the error
        row["error"] = f"{type(e).__name__}: {e}"
        row["traceback"] = traceback.format_exc(limit=8)
    finally:
        torch.set_num_threads(previous_threads)
    row["duration_s"] = round(time.perf_counter() - t0, 2)
    return row


def _transferability(spec: StudySpec, cell: Cell, pretrained: str | None, out: Path) -> dict[str, Any]:
    """kNN, linear-probe and LogME estimates of (target, start, backbone) before fine-tuning, and the domain gap to
    an SSL start's pretraining pool; computed once, cached in ``<out>/transferability``."""
    if not spec.transferability:
        return {}
    path = out / "transferability" / cell.target.name / f"{cell.start}__{cell.backbone}.json"
    t = cell.target
    made_by = {"start": start_identity(spec, spec.start(cell.start), cell.backbone, t.spatial_dims, t.domain_key),
               "estimators": list(spec.transferability), "data": data_digest(t.data),
               "backbone_kwargs": spec.finetune.get("backbone_kwargs"), "version": package_version()}  # fmt: skip
    cached = read_identity(path)
    if cached is not None and changed(cached.get("identity"), made_by) is None:
        return cached
    from monai_transfer.evaluation.rank import rank_backbones

    start = spec.start(cell.start)
    source = (start.ssl or {}).get("data") if start.kind in ("ssl", "continual") else None
    try:
        res = rank_backbones([(cell.backbone, pretrained)], cell.datalist, t.spatial_dims, in_channels=t.in_channels,
                             section=("training", "validation"), source_data=source, seed=0,
                             backbone_kwargs=spec.finetune.get("backbone_kwargs"), n_folds=3)  # fmt: skip
        r = res.rows[0]
        est = {"transferability": {k: r[k] for k in spec.transferability if r.get(k) is not None},
               "domain_gap": r.get("frechet"), "warnings": res.warnings}  # fmt: skip
    except Exception as e:  # an estimate that cannot be made is reported, never fatal to the study
        est = {"transferability": {}, "domain_gap": None, "warnings": [f"{type(e).__name__}: {e}"]}
    est["identity"] = made_by
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(est, indent=1, default=str))
    return est


def _probe_features(cell: Cell, payload: dict[str, Any], out: Path, done: dict[str, dict]) -> dict[str, Any]:
    """``payload["probe"]`` of a cached linear-probe cell, its features written (or found) once per file."""
    from monai_transfer.study.probes import ensure_features, features_path
    from monai_transfer.study.targets import target_sections

    seed = cell.seed if payload["pretrained"] is None else None  # a random start's encoder is drawn by the seed
    path = str(features_path(out, cell.target.name, cell.start, cell.backbone, seed))
    if path not in done:
        sections = target_sections(cell.target)
        entries = [e for s in ("training", "validation", "test") for e in sections[s]]
        try:
            done[path] = {"features": ensure_features({**payload, "probe": {"features": path}}, entries)}
        except Exception as e:  # the cells fail with it (and the study goes on, as for a failing fine-tuning run)
            done[path] = {"features": path, "error": f"features not computed: {type(e).__name__}: {e}"}
    return done[path]


def _cells_to_run(cells: list[Cell], identities: Mapping[str, dict[str, Any]], store: ResultsStore, out: Path,
                  retry_failed: bool, has_folder: Callable[[Cell], bool] | None = None) -> list[Cell]:  # fmt: skip
    """The cells without a row made by what makes them today: never run, failed (with ``retry_failed``), or stale
    (their spec values, data content or the package version changed since). A stale or changed cell's folder is
    removed first (it is the study's own), so its run starts afresh instead of resuming another cell's state; the
    difference is said once, with a count."""
    todo, stale = [], {}
    for c in cells:
        row = store.get(c.id)
        if row is None:
            todo.append(c)
        elif row.get("identity_digest") != digest(identities[c.id]):
            stale[c.id] = changed(row.get("identity"), identities[c.id])
            todo.append(c)
        elif retry_failed and row.get("status") != "ok":
            todo.append(c)
    if stale:
        first = next(iter(stale.values()))
        logger.warning(f"{len(stale)} cell(s) changed since they ran ({first}); running them again")
    for c in todo:
        folder, record = out / "cells" / c.id, out / "cells" / f"{c.id}.identity.json"
        if folder.exists() and (c.id in stale or changed(read_identity(record), identities[c.id]) is not None):
            shutil.rmtree(folder)  # a half-run cell of another spec: never resumed into this one
        if has_folder is None or has_folder(c):  # a cached linear probe has no run folder to guard
            write_identity(record, identities[c.id])
    return todo


def plan_study(spec: StudySpec, out: str | os.PathLike) -> list[Cell]:
    """Check every cell's data (raises ``SpecError`` on an impossible cell) and list the cells; writes only
    ``<out>/data``."""
    return expand_cells(spec, write_cell_data(spec, out))


def _best_bundles(spec: StudySpec, rows: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """Per target, the bundle of the start with the best mean score on the full data (over seeds): the run of that
    start whose score is nearest its mean (a representative run, not the luckiest seed). Cached linear probes have
    no run folder to make a bundle from: the best among fine-tuning runs is chosen, and STUDY.md says so when a
    cached probe scored higher."""
    written = {}
    for target in spec.targets:
        ok = [r for r in rows if r["target"] == target.name and r["status"] == "ok" and r["challenge"] == "full"]
        groups: dict[tuple, list] = {}
        for r in ok:
            groups.setdefault((r["start"], r["backbone"], r["strategy"], r.get("probe") == "cached"), []).append(r)
        ranked = sorted(groups, key=lambda k: -sum(r["score"] for r in groups[k]) / len(groups[k]))
        runs = [k for k in ranked if not k[3]]
        if not runs:
            continue
        best = runs[0]
        mean = sum(r["score"] for r in groups[best]) / len(groups[best])
        note = ""
        if ranked[0][3]:
            top = ranked[0]
            top_mean = sum(r["score"] for r in groups[top]) / len(groups[top])
            note = (f"\nA cached linear probe scored higher, {top[0]} ({top[1]}): mean {top_mean:.4f}; it has no run "
                    "folder to make a bundle from (its head was trained on cached features). Run it with "
                    "`linear_probe: pipeline` for a bundle.\n")  # fmt: skip
        row = min(groups[best], key=lambda r: (abs(r["score"] - mean), r["seed"]))
        from monai_transfer.bundle import bundle_from_run

        dst = out / "best" / target.name
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        bundle_from_run(row["run_dir"], tmp)  # the run's best weights, hard-linked
        atomic_write_text(tmp / "STUDY.md", f"# Best starting point for {target.name}\n\n{best[0]} ({best[1]}, "
                          f"{best[2]}): mean {spec.metric(target)} {mean:.4f} over {len(groups[best])} seed(s) on the "
                          f"full data; this is seed {row['seed']} (score {row['score']:.4f}, nearest the mean).\n{note}")  # fmt: skip
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        written[target.name] = str(dst)
    return written


#: scores at or below which a classifier has learned nothing worth comparing (AUROC 0.5 is chance)
CHANCE = {"auroc": 0.6}


def _chance_warnings(spec: StudySpec, rows: list[dict[str, Any]]) -> list[str]:
    """A study whose every starting point stays near chance on the full data compares noise: say so."""
    out = []
    for target in spec.targets:
        metric = spec.metric(target)
        if metric not in CHANCE:
            continue
        means = {}
        for r in rows:
            if r["target"] == target.name and r["challenge"] == "full" and r["status"] == "ok":
                means.setdefault(r["start"], []).append(r["score"])
        if means and max(sum(v) / len(v) for v in means.values()) <= CHANCE[metric]:
            best = max(means, key=lambda k: sum(means[k]) / len(means[k]))
            out.append(f"target {target.name!r}: no starting point learned the task on the full data (best mean "
                       f"{metric} {sum(means[best]) / len(means[best]):.3f}, {best}; chance is 0.5): the comparisons "
                       "rest on noise. Give the cells more data or epochs before reading them.")  # fmt: skip
    return out


def run_study(spec: StudySpec, out: str | os.PathLike, raw: Mapping[str, Any] | None = None, executor: str = "local",
              workers: int = 1, address: str | None = None, retry_failed: bool = False, progress: bool = True,
              report: bool = True, threads: int | None = None, verbose: bool = False,
              keep_checkpoints: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """Run every unfinished cell of ``spec`` into ``out`` and write the report.

    Args:
        spec: the checked spec (:func:`monai_transfer.study.load_spec`).
        out: the study folder (``data/``, ``pretrain/``, ``cells/``, ``results/``, ``report/``, ``best/``).
        raw: the spec as written (saved as ``out/spec.yaml``).
        executor: ``"local"`` (``workers`` processes; 1 = in this process) or ``"ray"`` (a Ray cluster at ``address``).
        workers: local processes.
        address: the Ray cluster's address (``127.0.0.1:6379``); None starts a local one.
        retry_failed: run failed cells again.
        threads: CPU threads per cell (recorded in each row; the same count gives the same results on every
            executor); default: the cores divided by ``workers`` locally, 1 on Ray.
        progress: show progress on stderr: the in-study pretraining's epochs and the cells with the time left (a bar
            on a terminal, one plain line each otherwise; :mod:`monai_transfer.study.console`). The logs go to
            ``out/study.log`` and ``out/logs/`` either way.
        report: write the report and best bundles at the end.
        verbose: every INFO line on the console too (MONAI's per-epoch lines of every cell included).
        keep_checkpoints: keep finished runs' resume checkpoints (``checkpoints/last.pt``); default: the spec's
            ``keep_checkpoints`` (false: a cell's is removed once its row is stored, a pretraining's once it finished).

    Returns:
        ``{"cells": n, "ran": n, "failed": n, "rows": [...], "report": {...}, "best": {...}, "duration_s": s}``.

    Raises:
        SpecError: an impossible cell (before anything trains). StudyStopped: a cell failed under ``on_error: stop``.
    """
    from monai_transfer.study.console import StudyConsole

    keep = bool(getattr(spec, "keep_checkpoints", False) if keep_checkpoints is None else keep_checkpoints)
    with StudyConsole(Path(out).absolute(), progress=progress, verbose=verbose) as console:
        return _run_study(spec, out, raw, executor, workers, address, retry_failed, report, threads, console, keep)


def _run_study(spec: StudySpec, out: str | os.PathLike, raw: Mapping[str, Any] | None, executor: str, workers: int,
               address: str | None, retry_failed: bool, report: bool, threads: int | None, console: Any,
               keep: bool) -> dict[str, Any]:  # fmt: skip
    from monai_transfer.study.disk import drop_resume_state
    from monai_transfer.study.executors import make_executor
    from monai_transfer.study.precision import apply_study_precision
    from monai_transfer.study.probes import uses_cached_probe

    t0 = time.perf_counter()
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        import yaml

        atomic_write_text(out / "spec.yaml", yaml.safe_dump(dict(raw), sort_keys=False))
    cells = plan_study(spec, out)
    check_target_images(spec)  # a NaN or truncated image named now, with the user's datalist, not in its first cell
    store = ResultsStore(out)
    identities = {c.id: cell_identity(spec, c) for c in cells}
    todo = _cells_to_run(cells, identities, store, out, retry_failed, lambda c: not uses_cached_probe(spec, c))
    logger.info(f"study {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run")
    starts: dict[tuple[str, str, int], str | None] = {}
    payloads, extras, features = [], {}, {}
    for c in todo:
        key = (c.start, c.backbone, c.target.spatial_dims)
        if key not in starts:
            if spec.start(c.start).pretrained_in_study:
                logger.info(f"starting point {c.start}: pretraining (or reading) it for {c.backbone} {key[2]}D")
            with console.start(out, spec.start(c.start), c.backbone, key[2]):  # its log, its epochs on the console
                starts[key] = resolve_start(spec, spec.start(c.start), c.backbone, c.target.spatial_dims, out,
                                            c.target.domain_key)  # fmt: skip
            if starts[key] is not None and spec.start(c.start).pretrained_in_study and not keep:
                drop_resume_state(Path(starts[key]).parent)  # finished: its encoder or bundle stays
            if starts[key] is not None and spec.start(c.start).kind != "source" and not os.path.exists(starts[key]):
                raise FileNotFoundError(f"starting point {c.start!r}: its weights {starts[key]} were not written")
        payloads.append(cell_payload(c, spec, starts[key], out))
        with console.quiet():  # its notes go to study.log (and into the report), not to the console
            extras[c.id] = _transferability(spec, c, starts[key], out)
        if uses_cached_probe(spec, c):  # features computed here, once per file; the cells (any executor) read them
            payloads[-1]["probe"] = _probe_features(c, payloads[-1], out, features)
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers)) if executor == "local" else 1
    for p in payloads:
        p.update(threads=threads, log=str(cell_log_path(out, p["cell"])), verbose=console.verbose)
    apply_study_precision(payloads, out, threads)  # one precision per (target, backbone), in <out>/precision.json
    stopped = None
    with make_executor(executor, workers=workers, address=address, threads=threads) as ex:
        for row in console.cells(ex.map(run_cell, payloads), len(payloads), spec.name):
            est = extras.get(row["cell"], {})
            row.update(transferability=est.get("transferability", {}), domain_gap=est.get("domain_gap"),
                       identity=identities[row["cell"]], identity_digest=digest(identities[row["cell"]]))  # fmt: skip
            store.put(row)
            if row["status"] == "ok" and row.get("run_dir") and not keep:
                drop_resume_state(row["run_dir"])  # the stored row marks the cell done: its resume state is not needed
            if row["status"] != "ok":
                logger.warning(f"cell {row['cell']} ({row['target']}, {row['challenge']}, {row['start']}, seed "
                               f"{row['seed']}) failed: {row['error']}")  # fmt: skip
                if spec.on_error == "stop":
                    stopped = row
                    break
    # only rows made by what makes each cell today (a study stopped early may leave stale rows unreplaced)
    rows = [r for r in store.rows([c.id for c in cells]) if r.get("identity_digest") == digest(identities[r["cell"]])]
    result: dict[str, Any] = {"cells": len(cells), "ran": len(todo), "failed": sum(r["status"] != "ok" for r in rows),
                              "rows": rows, "report": {}, "best": {}}  # fmt: skip
    if stopped is not None:
        raise StudyStopped(f"cell {stopped['cell']} failed and on_error is 'stop': {stopped['error']}")
    result["warnings"] = _chance_warnings(spec, rows)
    for w in result["warnings"]:
        logger.warning(w)
    if report and rows:
        from monai_transfer.study.report import write_report

        result["report"] = write_report(rows, out / "report", reference=spec.reference, title=spec.name,
                                        spec=dict(raw) if raw is not None else None)  # fmt: skip
        if spec.best_bundle:
            result["best"] = _best_bundles(spec, rows, out)
    result["duration_s"] = round(time.perf_counter() - t0, 1)
    return result
