"""A study spec: targets x challenges x starting points x backbones x strategies x seeds, checked before anything runs.

A spec is YAML (or a mapping); relative paths resolve against the spec file's folder (a preset's against
``data_root``). Every problem is named with its place in the spec (``starts[2].ssl.method``), an unknown key with
its closest known one, so a study never fails an hour in on a typo. See ``docs/studies.md`` for the reference.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer.study.errors import MissingDataError, SpecError

__all__ = [
    "SpecError",
    "MissingDataError",
    "Target",
    "Start",
    "Challenge",
    "StudySpec",
    "parse_spec",
    "load_spec",
    "replace_targets",
    "START_KINDS",
]

START_KINDS = ("random", "source", "path", "ssl", "supervised", "continual")
TASKS = ("classification", "segmentation")
DEFAULT_METRIC = {"classification": "auroc", "segmentation": "mean_dice"}
METRICS = {"classification": ("auroc", "accuracy"), "segmentation": ("mean_dice",)}

TOP_KEYS = ("name", "description", "data_root", "data_help", "prepare", "metric", "reference", "seeds", "backbones",
            "strategies", "starts", "targets", "challenges", "finetune", "transferability", "on_error",
            "best_bundle", "linear_probe", "keep_checkpoints", "equivalence_margin")  # fmt: skip
TARGET_KEYS = ("name", "data", "task", "spatial_dims", "in_channels", "domain_key", "patient_key", "positive", "metric")
START_KEYS = ("name", "random", "source", "path", "ssl", "supervised", "continual")
#: keys of a supervised start besides the fine-tuning settings a study may set: its data, the sites or modalities it
#: keeps (``domain``) and its task
SUPERVISED_OWN = ("data", "domain", "task")
CONTINUAL_KEYS = ("from", "ssl")
CHALLENGE_KEYS = ("full", "label_fractions", "imbalance", "domain")
ESTIMATORS = ("knn", "linear_probe", "logme")
#: how linear-probe cells of classification targets run: a head on cached encoder features, or whole finetune runs
LINEAR_PROBE_MODES = ("cached", "pipeline")


def _fail(place: str, message: str) -> None:
    raise SpecError(f"{place}: {message}")


def _study_fields(kind: str) -> list[str]:
    """The fields of a run kind's spec a study may set (each cell or start sets the others)."""
    from monai_transfer.engines.specs import spec_class, spec_fields

    return [f.name for f in spec_fields(spec_class(kind), study=True)]


def _check_fields(kind: str, values: Mapping[str, Any], place: str) -> None:
    """Each value checked as a run of ``kind`` checks it, named with ``place``."""
    from monai_transfer.engines.specs import SpecFieldError, check_values, spec_class

    try:
        check_values(spec_class(kind), values, place)
    except SpecFieldError as err:
        raise SpecError(str(err)) from None


def _finetune_section(section: Any) -> Mapping[str, Any]:
    """The spec's ``finetune:`` section: fields of the fine-tuning spec a study may set (each cell sets the rest),
    every value checked as a run checks it; kept as written (a cell's identity holds them as the user gave them)."""
    _check_fields("finetune", section, "finetune")
    return section


def _check_keys(obj: Any, known: Sequence[str], place: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        _fail(place, f"expected a mapping with keys among {list(known)}, got {type(obj).__name__}")
    for key in obj:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            _fail(f"{place}.{key}" if place else str(key), f"unknown key{hint}")
    return obj


def _list(obj: Any, place: str, item_type: type | tuple[type, ...] | None = None, allow_empty: bool = False) -> list:
    if obj is None and allow_empty:
        return []
    items = obj if isinstance(obj, list) else [obj]
    if not items and not allow_empty:
        _fail(place, "must not be empty")
    if item_type is not None:
        for i, x in enumerate(items):
            if not isinstance(x, item_type) or isinstance(x, bool):
                _fail(f"{place}[{i}]", f"expected {getattr(item_type, '__name__', item_type)}, got {x!r}")
    return items


def _path(value: Any, root: Path, place: str, must_exist: bool = True) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        _fail(place, f"expected a path, got {value!r}")
    p = Path(os.path.expanduser(os.fspath(value)))
    p = p if p.is_absolute() else root / p
    if must_exist and not p.exists():
        raise MissingDataError(f"{place}: file not found: {p}")
    return str(p)


@dataclass(frozen=True)
class Target:
    name: str
    data: str  #: datalist JSON, MedMNIST .npz, MSD folder or CSV folder (resolved to a datalist when cells are made)
    task: str
    spatial_dims: int
    in_channels: int = 1
    domain_key: str = "site"
    patient_key: str | None = "patient_id"
    positive: Any = 1
    metric: str = ""


@dataclass(frozen=True)
class Start:
    name: str
    kind: str  #: one of START_KINDS
    source: str | None = None  #: a published source name (``kind == "source"``)
    path: str | None = None  #: a checkpoint file or bundle folder (``kind == "path"``)
    ssl: Mapping[str, Any] | None = None  #: pretraining options (``ssl``, ``continual``)
    supervised: Mapping[str, Any] | None = None
    base: str | None = None  #: the start a ``continual`` start continues from

    @property
    def pretrained_in_study(self) -> bool:
        return self.kind in ("ssl", "supervised", "continual")


@dataclass(frozen=True)
class Challenge:
    kind: str  #: full, label_fraction, imbalance, domain
    value: Any = None
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "full":
            return "full"
        if self.kind == "label_fraction":
            return f"fraction {self.value:g}"
        if self.kind == "imbalance":
            return f"imbalance {self.value:g}:1"
        return f"domain {'+'.join(self.train)} -> {'+'.join(self.test)}"

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in self.label.replace(" -> ", "_to_"))


@dataclass(frozen=True)
class StudySpec:
    name: str
    targets: tuple[Target, ...]
    starts: tuple[Start, ...]
    backbones: tuple[str, ...]
    strategies: tuple[str, ...]
    challenges: tuple[Challenge, ...]
    seeds: tuple[int, ...]
    reference: str
    finetune: Mapping[str, Any] = field(default_factory=dict)
    transferability: tuple[str, ...] = ESTIMATORS
    on_error: str = "continue"
    best_bundle: bool = True
    description: str = ""
    root: str = "."
    prepare: Mapping[str, Any] = field(default_factory=dict)
    linear_probe: str = "cached"  #: one of LINEAR_PROBE_MODES (monai_transfer.study.probes)
    keep_checkpoints: bool = False  #: keep finished runs' resume checkpoints (monai_transfer.study.disk)

    def start(self, name: str) -> Start:
        return next(s for s in self.starts if s.name == name)

    def metric(self, target: Target) -> str:
        return target.metric or DEFAULT_METRIC[target.task]


def _check_margin(margin: Any) -> None:
    """``equivalence_margin``: one number >= 0 for every metric, or metric -> number (see docs/studies.md, Power)."""
    items = margin.items() if isinstance(margin, Mapping) else [] if margin is None else [(None, margin)]
    for metric, m in items:
        place = "equivalence_margin" if metric is None else f"equivalence_margin.{metric}"
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < float("inf"):
            _fail(place, f"expected a number >= 0 (a paired difference this small counts as no effect), got {m!r}")


def _parse_target(obj: Any, place: str, root: Path, default_metric: str | None) -> Target:
    t = _check_keys(obj, TARGET_KEYS, place)
    for key in ("name", "data", "task"):
        if key not in t:
            _fail(place, f"missing {key!r}")
    if t["task"] not in TASKS:
        _fail(f"{place}.task", f"must be one of {TASKS}, got {t['task']!r}")
    dims = t.get("spatial_dims", 2)
    if dims not in (2, 3):
        _fail(f"{place}.spatial_dims", f"must be 2 or 3, got {dims!r}")
    metric = t.get("metric") or (default_metric if default_metric in METRICS[t["task"]] else "")
    if metric and metric not in METRICS[t["task"]]:
        _fail(f"{place}.metric", f"{metric!r} is not a {t['task']} metric; one of {METRICS[t['task']]}")
    return Target(
        name=str(t["name"]), data=_path(t["data"], root, f"{place}.data"), task=t["task"], spatial_dims=int(dims),
        in_channels=int(t.get("in_channels", 1)), domain_key=str(t.get("domain_key", "site")),
        patient_key=t.get("patient_key", "patient_id"), positive=t.get("positive", 1), metric=metric or "",
    )  # fmt: skip


def _parse_ssl(obj: Any, place: str, root: Path) -> dict[str, Any]:
    from monai_transfer.engines.specs import PretrainSpec, SpecFieldError, spec_fields

    # the pretraining settings a study may set (each in-study start sets its backbone, folder...); ``data`` is the
    # datalist, as a pretraining YAML file names it
    s = dict(_check_keys(obj, ["data", *(f.name for f in spec_fields(PretrainSpec, study=True) if f.name != "datalist")],
                         place))  # fmt: skip
    for key in ("method", "data"):
        if key not in s:
            _fail(place, f"missing {key!r}")
    try:  # every value checked as the run will check it (the study fills what it sets itself)
        roi = s.get("roi_size")
        dims = len(roi) if isinstance(roi, list) and len(roi) in (2, 3) else 2 if s.get("modality") == "xr" else 3
        PretrainSpec.from_mapping({**s, "spatial_dims": dims}, place)
    except SpecFieldError as err:
        raise SpecError(str(err)) from None
    from monai_transfer.ssl import list_methods

    if s["method"] not in list_methods():
        close = difflib.get_close_matches(str(s["method"]), list_methods(), n=1)
        _fail(
            f"{place}.method",
            f"unknown SSL method {s['method']!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
        )
    s["data"] = _path(s["data"], root, f"{place}.data")
    return s


def _parse_start(obj: Any, place: str, root: Path) -> Start:
    if isinstance(obj, str):  # shorthand: "random" or a source name
        obj = {"name": obj, "random": True} if obj == "random" else {"name": obj, "source": obj}
    s = _check_keys(obj, START_KEYS, place)
    if "name" not in s:
        _fail(place, "missing 'name'")
    kinds = [k for k in ("random", "source", "path", "ssl", "supervised", "continual") if k in s]
    if len(kinds) != 1:
        _fail(place, f"give exactly one of random, source, path, ssl, supervised, continual (got {kinds or 'none'})")
    kind, name = kinds[0], str(s["name"])
    if kind == "random":
        return Start(name, "random")
    if kind == "source":
        from monai_transfer.weights import list_sources

        if s["source"] not in list_sources():
            close = difflib.get_close_matches(str(s["source"]), list_sources(), n=1)
            _fail(f"{place}.source", f"unknown published source {s['source']!r}"
                  + (f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(list_sources())}"))  # fmt: skip
        return Start(name, "source", source=s["source"])
    if kind == "path":
        return Start(name, "path", path=_path(s["path"], root, f"{place}.path"))
    if kind == "ssl":
        return Start(name, "ssl", ssl=_parse_ssl(s["ssl"], f"{place}.ssl", root))
    if kind == "supervised":
        sup = dict(_check_keys(s["supervised"], [*SUPERVISED_OWN, *_study_fields("finetune")], f"{place}.supervised"))
        if "data" not in sup:
            _fail(f"{place}.supervised", "missing 'data'")
        sup["data"] = _path(sup["data"], root, f"{place}.supervised.data")
        if sup.get("task", "classification") not in TASKS:
            _fail(f"{place}.supervised.task", f"must be one of {TASKS}")
        _check_fields("finetune", {k: v for k, v in sup.items() if k not in SUPERVISED_OWN}, f"{place}.supervised")
        return Start(name, "supervised", supervised=sup)
    c = _check_keys(s["continual"], CONTINUAL_KEYS, f"{place}.continual")
    if "from" not in c or "ssl" not in c:
        _fail(f"{place}.continual", "needs 'from' (a starting point's name) and 'ssl' (the further pretraining)")
    return Start(name, "continual", base=str(c["from"]), ssl=_parse_ssl(c["ssl"], f"{place}.continual.ssl", root))


def _parse_challenges(obj: Any, place: str) -> tuple[Challenge, ...]:
    c = _check_keys(obj or {}, CHALLENGE_KEYS, place)
    out: list[Challenge] = [Challenge("full")] if c.get("full", True) else []
    for i, f in enumerate(_list(c.get("label_fractions"), f"{place}.label_fractions", (int, float), True)):
        if not 0 < f < 1:
            _fail(f"{place}.label_fractions[{i}]", f"a fraction in (0, 1), got {f} (1.0 is the 'full' challenge)")
        out.append(Challenge("label_fraction", float(f)))
    for i, r in enumerate(_list(c.get("imbalance"), f"{place}.imbalance", (int, float), True)):
        if r <= 1:
            _fail(f"{place}.imbalance[{i}]", f"a majority:minority ratio above 1 (e.g. 10 for 10:1), got {r}")
        out.append(Challenge("imbalance", float(r)))
    for i, d in enumerate(_list(c.get("domain"), f"{place}.domain", None, True)):
        d = _check_keys(d, ("train", "test"), f"{place}.domain[{i}]")
        if "train" not in d or "test" not in d:
            _fail(f"{place}.domain[{i}]", "needs 'train' and 'test' domain values (of each target's domain_key)")
        tr = tuple(str(x) for x in _list(d["train"], f"{place}.domain[{i}].train"))
        te = tuple(str(x) for x in _list(d["test"], f"{place}.domain[{i}].test"))
        if set(tr) & set(te):
            _fail(f"{place}.domain[{i}]", f"{sorted(set(tr) & set(te))} in both train and test")
        out.append(Challenge("domain", None, tr, te))
    if not out:
        _fail(place, "no challenge left (full: false and nothing else)")
    return tuple(out)


def parse_spec(obj: Mapping[str, Any], root: str | os.PathLike = ".") -> StudySpec:
    """Check a spec mapping and resolve its paths against ``root`` (or its ``data_root``).

    Raises:
        SpecError: the first problem, named with its place in the spec.
    """
    s = _check_keys(obj, TOP_KEYS, "")
    try:
        return _parse_checked(s, root)
    except MissingDataError as e:
        if not s.get("data_help"):
            raise
        # a preset on the user's own files says where they come from, next to the path it did not find
        raise MissingDataError(f"{e}\n{' '.join(str(s['data_help']).split())}") from None


def _parse_checked(s: Mapping[str, Any], root: str | os.PathLike) -> StudySpec:
    base = Path(root).expanduser().absolute()
    if s.get("data_root"):
        # not checked itself: each path under it is, with its place and full name (and --target may replace them all)
        base = Path(_path(s["data_root"], base, "data_root", must_exist=False))
    for key in ("targets", "starts", "backbones", "seeds"):
        if key not in s:
            _fail("spec", f"missing {key!r}")
    default_metric = s.get("metric")
    targets = tuple(
        _parse_target(t, f"targets[{i}]", base, default_metric) for i, t in enumerate(_list(s["targets"], "targets"))
    )
    starts = tuple(_parse_start(t, f"starts[{i}]", base) for i, t in enumerate(_list(s["starts"], "starts")))
    for label, items in (("targets", targets), ("starts", starts)):
        names = [x.name for x in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            _fail(label, f"names must be unique; repeated: {dup}")
    names = [x.name for x in starts]
    for i, st in enumerate(starts):
        if st.kind == "continual":
            if st.base not in names:
                _fail(f"starts[{i}].continual.from", f"{st.base!r} is not a starting point of this spec ({names})")
            if starts[names.index(st.base)].kind == "continual":
                _fail(f"starts[{i}].continual.from", "continue from a random, source, path, ssl or supervised start")
    reference = s.get("reference", "random")
    if reference not in names:
        _fail("reference", f"{reference!r} is not a starting point of this spec ({names})")
    _check_margin(s.get("equivalence_margin"))
    seeds = tuple(int(x) for x in _list(s["seeds"], "seeds", int))
    if len(set(seeds)) != len(seeds):
        _fail("seeds", f"repeated seeds {list(seeds)}")
    on_error = s.get("on_error", "continue")
    if on_error not in ("continue", "stop"):
        _fail("on_error", f"'continue' or 'stop', got {on_error!r}")
    estimators = s.get("transferability", list(ESTIMATORS))
    estimators = [] if estimators in (False, None) else list(ESTIMATORS) if estimators is True else estimators
    for i, e in enumerate(_list(estimators, "transferability", str, True)):
        if e not in ESTIMATORS:
            _fail(f"transferability[{i}]", f"unknown estimator {e!r}; one of {ESTIMATORS}")
    finetune = _finetune_section(s.get("finetune") or {})
    linear_probe = s.get("linear_probe", "cached")
    if linear_probe not in LINEAR_PROBE_MODES:
        _fail("linear_probe", "'cached' (linear-probe cells of classification targets train a head on encoder features "
              "computed once per target, start and backbone) or 'pipeline' (each cell a whole finetune run), got "
              f"{linear_probe!r}")  # fmt: skip
    keep_checkpoints = s.get("keep_checkpoints", False)
    if not isinstance(keep_checkpoints, bool):
        _fail("keep_checkpoints", f"true or false, got {keep_checkpoints!r}")
    spec = StudySpec(
        name=str(s.get("name", "study")), targets=targets, starts=starts,
        backbones=tuple(str(b) for b in _list(s["backbones"], "backbones", str)),
        strategies=tuple(str(x) for x in _list(s.get("strategies", ["full"]), "strategies", str)),
        challenges=_parse_challenges(s.get("challenges"), "challenges"), seeds=seeds, reference=reference,
        finetune=dict(finetune), transferability=tuple(estimators), on_error=on_error,
        best_bundle=bool(s.get("best_bundle", True)), description=str(s.get("description", "")), root=str(base),
        prepare=dict(s.get("prepare") or {}), linear_probe=linear_probe, keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    _check_fits(spec)
    return spec


def _check_fits(spec: StudySpec) -> None:
    """Backbones, strategies and published sources exist and fit each other and every target's dimensionality."""
    from monai_transfer.finetune import list_strategies
    from monai_transfer.networks import list_backbones
    from monai_transfer.weights import get_source

    known = list_backbones()
    for i, b in enumerate(spec.backbones):
        if b not in known:
            close = difflib.get_close_matches(b, known, n=1)
            _fail(f"backbones[{i}]", f"unknown backbone {b!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    strategies = list_strategies()
    for i, st in enumerate(spec.strategies):
        base = st.split("-")[0] + "-k" if st.startswith("freeze-") and st[7:].isdigit() else st
        if st not in strategies and base not in strategies:
            _fail(f"strategies[{i}]", f"unknown strategy {st!r}; known: {', '.join(strategies)}")
    for i, st in enumerate(spec.starts):
        if st.kind == "source":
            files = get_source(st.source).files
            for b in spec.backbones:
                if b not in files:
                    _fail(f"starts[{i}].source", f"{st.source!r} has no weights for backbone {b!r} (it has: "
                          f"{', '.join(files)}); drop the backbone or the start, or give a path start")  # fmt: skip
        for sub, opts in (("ssl", st.ssl),):
            if opts:
                from monai_transfer.ssl import check_method_backbone

                for b in spec.backbones:
                    for t in spec.targets:
                        try:
                            check_method_backbone(opts["method"], b, t.spatial_dims)
                        except ValueError as e:
                            where = f"starts[{i}].{'continual.' if st.kind == 'continual' else ''}{sub}.method"
                            _fail(where, f"{e} (backbone {b}, target {t.name} in {t.spatial_dims}D)")


def read_spec_file(path: str | os.PathLike | None = None, preset: str | None = None) -> tuple[dict[str, Any], Path]:
    """The raw mapping of a spec file or a named preset, and the file it came from (not yet checked)."""
    import yaml

    if (path is None) == (preset is None):
        raise SpecError("give a spec file or --preset NAME (one of them)")
    if preset is not None:
        from monai_transfer.study.presets import preset_path

        path = preset_path(preset)
    p = Path(path)
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.y*ml"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise SpecError(f"{p} is a folder, not a study spec file: give the spec's YAML file{hint} or --preset NAME")
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a study spec (binary content); a spec is a YAML text file") from None
    except OSError as e:
        raise SpecError(f"{p}: the spec file cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{p}: a spec is a mapping (targets, starts, backbones, seeds, ...)")
    return dict(raw), p


def replace_targets(raw: Mapping[str, Any], targets: Mapping[str, str | os.PathLike]) -> dict[str, Any]:
    """A copy of a raw spec whose named targets read other data (``--target NAME=PATH``).

    A relative ``PATH`` starts at the current folder (where the user typed it), not at the spec's ``data_root``. An
    in-study pretraining (``ssl``, ``continual.ssl``, ``supervised``) whose ``data`` is the replaced target's own
    file, or a file inside the target's folder (an MSD task's ``dataset.json``), moves with it: "SSL on the target's
    own images" stays that on the new data. Other pools stay as they are.

    Raises:
        SpecError: a name that is not a target of the spec.
    """
    import copy

    raw = copy.deepcopy(dict(raw))
    items = raw.get("targets") if isinstance(raw.get("targets"), list) else []
    names = [t.get("name") for t in items if isinstance(t, Mapping)]
    for name, new in targets.items():
        if name not in names:
            _fail("--target", f"{name!r} is not a target of this spec; its targets: {', '.join(map(str, names))}")
        target = items[names.index(name)]
        old, target["data"] = target.get("data"), str(Path(os.path.expanduser(os.fspath(new))).absolute())
        for start in raw.get("starts") or []:
            if not isinstance(start, Mapping):
                continue
            for opts in (start.get("ssl"), start.get("supervised"), (start.get("continual") or {}).get("ssl")):
                if isinstance(opts, dict) and isinstance(old, str) and isinstance(opts.get("data"), str):
                    rest = Path(opts["data"]).relative_to(old) if Path(opts["data"]).is_relative_to(old) else None
                    if rest is not None:
                        opts["data"] = str(Path(target["data"]) / rest) if str(rest) != "." else target["data"]
    return raw


def load_spec(path: str | os.PathLike | None = None, preset: str | None = None,
              data_root: str | os.PathLike | None = None,
              targets: Mapping[str, str | os.PathLike] | None = None) -> tuple[StudySpec, dict[str, Any]]:  # fmt: skip
    """Read a spec file or a named preset (``data_root`` replaces the preset's or the file's, ``targets`` the data of
    the named targets, see :func:`replace_targets`); returns the checked spec and the raw mapping (saved beside the
    results, overrides included)."""
    raw, p = read_spec_file(path, preset)
    if data_root is not None:
        raw["data_root"] = str(Path(data_root).expanduser().absolute())
    if targets:
        try:
            raw = replace_targets(raw, targets)
        except SpecError as e:
            raise SpecError(f"{p}: {e}") from None
    try:
        return parse_spec(raw, p.parent), raw
    except SpecError as e:
        raise type(e)(f"{p}: {e}") from None
