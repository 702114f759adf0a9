"""The typed run specification every run kind shares: its fields, how a value is checked, and how a spec is built from
a mapping (a study spec's section, a YAML file, keyword arguments) with every error naming the field.

A field is declared once with :func:`setting`: its type (the annotation), default, help text and where it shows up
(the command line's flag, whether a study spec's section may set it, the config id the run's bundle config holds it
under). The command line (:mod:`monai_transfer.cli.spec_flags`), the study spec and the config builders read those
declarations, never their own lists of names, so adding a setting is one field plus the code that uses it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from monai_transfer.engines.precision import normalize_choice

__all__ = [
    "RunSpec",
    "BaseRunSpec",
    "TrainingRunSpec",
    "SpecFieldError",
    "setting",
    "spec_fields",
    "check_values",
    "switch",
]

S = TypeVar("S", bound="RunSpec")

_MISSING = dataclasses.MISSING


class SpecFieldError(ValueError):
    """A bad value of one field, named with its place (``finetune.epochs: expected ...``)."""


def setting(
    default: Any = _MISSING,
    help: str = "",
    *,
    factory: Any = _MISSING,
    choices: tuple[Any, ...] | None = None,
    flag: str | None = None,
    cli: bool = True,
    study: bool = True,
    config_id: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
    metavar: str | None = None,
    nargs: str | None = None,
    positional: bool = False,
    check: Any = None,
    normalize: Any = None,
) -> Any:
    """A spec field with what the entry points need to know about it.

    Args:
        default / factory: its default value (or a factory for mutable ones).
        help: one sentence for ``--help`` and the docs.
        choices: the values it accepts.
        flag: the command-line flag when it is not ``--<name with dashes>``; ``cli=False``: no flag (the command
            builds it from other flags, like ``resume`` from ``--resume``/``--overwrite``).
        study: whether a study spec's section may set it (``False`` for what each cell sets itself).
        config_id: the id of the run's bundle config that holds its value (set after the config is built).
        minimum / maximum / open_minimum: the range of a number (``open_minimum``: the minimum itself is refused).
        metavar / nargs: how the flag reads its value (``nargs="+"`` for a list, ``"*"`` for ``KEY=VALUE`` pairs).
        positional: the command reads it as a positional argument (``evaluate RUN``).
        check: a function that raises ``ValueError`` for a bad value (named with the field when it does).
        normalize: a function ``(value, default) -> value`` applied before the type check, for fields with several
            spellings of one value (a switch: ``True``/``"on"``/``"yes"``); a ``ValueError`` is named with the field.
    """
    meta = {"help": help, "choices": choices, "flag": flag, "cli": cli, "study": study, "config_id": config_id,
            "minimum": minimum, "maximum": maximum, "open_minimum": open_minimum, "metavar": metavar, "nargs": nargs,
            "positional": positional, "check": check, "normalize": normalize}  # fmt: skip
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is not None:  # list[float], not list
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_one(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` accepts it (an int for a float, a tuple for a list), or a :class:`SpecFieldError`."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_one(value, option, where)
            except SpecFieldError:
                pass
        raise SpecFieldError(f"{where}: expected {' or '.join(_describe(o) for o in options)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SpecFieldError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SpecFieldError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SpecFieldError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, os.PathLike)):  # a path given as a Path is its string
            return os.fspath(value)
        raise SpecFieldError(f"{where}: expected a string, got {value!r}")
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecFieldError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return [_check_one(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise SpecFieldError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


class RunSpec:
    """Fields and checks every run kind shares (see :class:`BaseRunSpec` for the fields themselves).

    Subclasses are dataclasses; ``__post_init__`` checks every field once (type, choices, range) and then
    :meth:`check` (what spans fields). A bad value raises :class:`SpecFieldError` naming the field.
    """

    #: the word used in messages (``fine-tuning``)
    kind: ClassVar[str] = "run"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _check_field(f, hints[f.name], getattr(self, f.name), f.name))
        self.check()

    def check(self) -> None:
        """What spans fields (subclasses add theirs)."""

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any], place: str = "", sep: str = ".") -> S:
        """Build from a mapping; an unknown key is named with the closest known one, a bad value with its field
        (after ``place`` and ``sep``: ``finetune.epochs``, or ``run.yaml: epochs`` with ``sep=": "``)."""
        try:
            _unknown(values, [f.name for f in fields(cls)], "")  # type: ignore[arg-type]
            return cls(**values)
        except SpecFieldError as err:
            raise SpecFieldError(f"{place}{sep}{err}" if place else str(err)) from None

    @classmethod
    def from_arguments(cls: type[S], args: tuple, settings: Mapping[str, Any], positional: tuple[str, ...],
                       caller: str) -> S:  # fmt: skip
        """Build from a function's arguments: a spec alone (``settings`` replacing some of its fields), or
        ``positional`` fields by position and the others by name; ``caller`` names the function in a ``TypeError``."""
        if args and isinstance(args[0], RunSpec):
            if len(args) > 1:
                raise TypeError(f"{caller}(spec) takes the spec alone; give other settings by name")
            return cls.from_mapping({**args[0].to_dict(), **settings})
        if len(args) > len(positional):
            raise TypeError(f"{caller}() takes at most {len(positional)} positional settings {positional}")
        given = dict(zip(positional, args))
        twice = sorted(set(given) & set(settings))
        if twice:
            raise TypeError(f"{caller}() got {twice[0]!r} both by position and by name")
        return cls.from_mapping({**given, **settings})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _check_field(f: dataclasses.Field, hint: Any, value: Any, where: str) -> Any:
    meta = f.metadata
    if meta.get("normalize") is not None:
        try:
            value = meta["normalize"](value, f.default)
        except ValueError as err:
            raise SpecFieldError(f"{where}: {err}") from None
    value = _check_one(value, hint, where)
    choices = meta.get("choices")
    if choices is not None and value is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint_text = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecFieldError(f"{where}: one of {', '.join(map(repr, choices))}, got {value!r}{hint_text}")
    if meta.get("check") is not None and value is not None:
        try:
            meta["check"](value)
        except ValueError as err:
            raise SpecFieldError(f"{where}: {err}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = meta.get("minimum"), meta.get("maximum")
        if low is not None and (value < low or (meta.get("open_minimum") and value == low)):
            raise SpecFieldError(f"{where}: must be {'>' if meta.get('open_minimum') else '>='} {low}, got {value!r}")
        if high is not None and value > high:
            raise SpecFieldError(f"{where}: must be <= {high}, got {value!r}")
    return value


def switch(value: Any, default: Any) -> str:
    """A switch's value (``"auto"``, ``"on"``, ``"off"``) from a boolean or any of their spellings; ``None`` is the
    field's default."""
    try:
        return normalize_choice(default if value is None else value)
    except ValueError:
        raise ValueError(f"one of 'auto', 'on', 'off' (or true/false), got {value!r}") from None


def _unknown(values: Mapping[str, Any], known: list[str], place: str) -> None:
    if not isinstance(values, Mapping):
        raise SpecFieldError(f"{place or 'spec'}: expected a mapping with keys among {known}, got {values!r}")
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise SpecFieldError(f"{place + '.' if place else ''}{key}: unknown key{hint}")


def spec_fields(cls: type[RunSpec], *, study: bool | None = None, cli: bool | None = None) -> list[dataclasses.Field]:
    """The fields of a spec class, optionally only those a study section may set or that have a flag."""
    out = []
    for f in fields(cls):  # type: ignore[arg-type]
        if study is not None and bool(f.metadata.get("study", True)) != study:
            continue
        if cli is not None and bool(f.metadata.get("cli", True)) != cli:
            continue
        out.append(f)
    return out


def check_values(cls: type[RunSpec], values: Mapping[str, Any], place: str, *, study: bool = True) -> dict[str, Any]:
    """Check some of a spec's fields on their own (a study spec's section sets part of a run's spec; each cell sets
    the rest): unknown keys and bad values are named with ``place``; the checked values are returned."""
    allowed = spec_fields(cls, study=True) if study else spec_fields(cls)
    _unknown(values, [f.name for f in allowed], place)
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in allowed}
    return {k: _check_field(by_name[k], hints[k], v, f"{place}.{k}" if place else k) for k, v in values.items()}


@dataclass
class BaseRunSpec(RunSpec):
    """The fields every run kind shares: where it writes, its seed, where it runs, in what precision, on how many CPU
    threads."""

    out_dir: str = setting("", "the run folder; nothing is written elsewhere", flag="--out", study=False, metavar="OUT")
    seed: int = setting(0, "seed of the data subset, initialisation, data order and augmentation", study=False,
                        config_id="seed")  # fmt: skip
    device: str | None = setting(None, "cpu, cuda, cuda:1 (default: CUDA when available)")
    amp: str | None = setting(
        "auto", "mixed precision: auto = AMP on CUDA; on CPU bfloat16 only where a short probe of the network (cached "
        "per machine) measures that it pays; on/off force it (default: auto; the choice and its reason are recorded)",
        choices=("auto", "on", "off"), normalize=switch)  # fmt: skip
    threads: int | None = setting(
        None, "torch CPU threads for this run, restored after it (default: torch's own, usually one per core); the "
        "count is recorded with the result, since another count gives other rounding", minimum=1, study=False)  # fmt: skip


@dataclass
class TrainingRunSpec(BaseRunSpec):
    """What a training run (fine-tuning, pretraining) adds: how it resumes, how fast it runs, what it reports to."""

    resume: str = setting("never", "an earlier run in out_dir: never refuses it, auto continues it (a finished run "
                          "is returned as it is; changed settings are refused, named), overwrite starts again",
                          choices=("never", "auto", "overwrite"), cli=False, study=False, config_id="resume")  # fmt: skip
    channels_last: str | None = setting(
        "auto", "channels-last memory layout (channels_last_3d for volumes) (default: auto = on for a 2D CNN in "
        "bfloat16 on CPU, the one case measured to pay; off otherwise, docs/benchmarks.md)",
        choices=("auto", "on", "off"), normalize=switch)  # fmt: skip
    compile: str | None = setting("off", "torch.compile the network; a failure is said once and the run goes eager",
                                  choices=("on", "off"), normalize=switch)  # fmt: skip
    num_workers: int = setting(0, "data-loader workers", minimum=0, config_id="num_workers")
    tensorboard: bool = setting(True, "TensorBoard logs under OUT/tensorboard (--no-tensorboard: none)", study=False)
    mlflow_uri: str | None = setting(
        None, "track the run in MLflow through MONAI's MLFlowHandler, e.g. sqlite:///mlruns.db (default: off)",
        study=False)  # fmt: skip
    progress: bool = setting(False, "no progress bar (the command shows one on long work; the Python API does not)",
                             flag="--quiet", study=False)  # fmt: skip
