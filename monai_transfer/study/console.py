"""What a study shows while it runs, and where its logs go.

The console shows progress and little else: the in-study pretraining as a phase (its epochs), the cells (done, total,
time left), warnings of the study itself, then the summary the command prints. Everything else goes to files:

* ``<out>/study.log``: the study's own log (INFO and above) outside cells and pretraining;
* ``<out>/logs/cells/<cell id>.log``: one cell's log (MONAI's and ignite's per-epoch INFO lines, ours, warnings);
* ``<out>/logs/pretrain/<start>__<backbone>_<d>d.log``: one in-study pretraining's log.

The logs live beside the run folders, not in them: a run owns its folder (``--overwrite`` and a changed cell's fresh
start remove it), and a log must survive both. ``verbose`` shows every INFO line on the console as well.

With a terminal (``isatty``) the progress is a bar redrawn in place; without one (a batch job, ``nohup``, a pipe) it is
one plain line per cell and per pretraining epoch, with no control characters.

Nothing here is global beyond the run: the handlers and filters are added when a study (or a cell, in whichever
process or Ray worker runs it) starts and removed when it ends. MONAI's loggers print to stdout and do not propagate
(``monai.apps.get_logger``); during a run their records are forwarded to the run's handlers and their own stdout
handlers are muted, then left as they were.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

__all__ = ["StudyConsole", "cell_log", "cell_log_path", "pretrain_log_path", "run_log", "format_duration"]

logger = logging.getLogger(__name__)

#: logger namespaces whose non-propagating loggers (MONAI's ``get_logger`` ones) a run forwards to its own handlers
LIBRARY_PREFIXES = ("monai", "monai_transfer", "ignite")
#: loggers MONAI's ``StatsHandler`` makes while a run builds its handlers (made before the run, so they are forwarded)
STATS_LOGGERS = ("monai.handlers.StatsHandler", "monai_transfer.ssl.train")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def cell_log_path(out: str | os.PathLike, cell_id: str) -> Path:
    return Path(out) / "logs" / "cells" / f"{cell_id}.log"


def pretrain_log_path(out: str | os.PathLike, start: str, backbone: str, dims: int) -> Path:
    return Path(out) / "logs" / "pretrain" / f"{start}__{backbone}_{dims}d.log"


# ------------------------------------------------------------------------------------------------- log routing


class _Forward(logging.Handler):
    """On a non-propagating logger: hands its records to the root logger's handlers (the run's files)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.root.handle(record)


class _Mute(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


class _RunFile(logging.FileHandler):
    """A cell's or a pretraining's log file; while one is on the root logger, the study's handlers stay quiet."""


def _std_stream(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return (not isinstance(handler, logging.FileHandler) and isinstance(handler, logging.StreamHandler)
            and stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))  # fmt: skip


@contextmanager
def _forwarded() -> Iterator[None]:
    """Forward the non-propagating library loggers to the root logger and mute their console handlers; undone after."""
    from monai.apps.utils import get_logger

    for name in STATS_LOGGERS:  # what StatsHandler would make mid-run, made now so that it is forwarded too
        if name not in logging.root.manager.loggerDict:
            get_logger(name)
    added: list[tuple[logging.Logger, logging.Handler]] = []
    muted: list[tuple[logging.Handler, logging.Filter]] = []
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger) or lg.propagate or name.split(".")[0] not in LIBRARY_PREFIXES:
            continue
        if any(isinstance(h, _Forward) for h in lg.handlers):
            continue  # an enclosing run forwards it already
        fwd = _Forward()
        lg.addHandler(fwd)
        added.append((lg, fwd))
        for h in lg.handlers:
            if _std_stream(h):
                f = _Mute()
                h.addFilter(f)
                muted.append((h, f))
    try:
        yield
    finally:
        for lg, fwd in added:
            lg.removeHandler(fwd)
        for h, f in muted:
            h.removeFilter(f)


def _show_warning_as_log(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                         line: Any = None) -> None:  # fmt: skip
    logging.getLogger("py.warnings").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)


@contextmanager
def run_log(path: str | os.PathLike, verbose: bool = False, header: str | None = None) -> Iterator[_RunFile]:
    """Send everything logged (and every Python warning) while the block runs to ``path`` (appended), not to the
    console; with ``verbose`` to stderr as well when no study console shows it. Used for a cell and a pretraining."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RunFile(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.root
    echo = None
    if verbose and not any(isinstance(h, _ConsoleHandler) for h in root.handlers):
        echo = logging.StreamHandler(sys.stderr)  # a worker process: its stderr is the console's
        echo.setLevel(logging.INFO)
        echo.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(echo)
    root.addHandler(handler)
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    if header:
        handler.emit(logging.LogRecord(__name__, logging.INFO, "", 0, header, None, None))
    try:
        with _forwarded(), warnings.catch_warnings():
            warnings.showwarning = _show_warning_as_log
            yield handler
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()
        if echo is not None:
            root.removeHandler(echo)


@contextmanager
def cell_log(payload: Mapping[str, Any]) -> Iterator[None]:
    """:func:`run_log` for one cell (its payload's ``log`` file, ``verbose``); nothing when the payload has none."""
    path = payload.get("log")
    if not path:
        yield
        return
    _preload()
    header = f"cell {payload.get('cell')}: {dict(payload.get('key', {}))}"
    with run_log(path, bool(payload.get("verbose")), header=header):
        yield


def _preload() -> None:
    """Import what a cell imports, so that the loggers MONAI makes at import time exist before they are forwarded (a
    worker process imports them inside its first cell otherwise)."""
    import monai.bundle  # noqa: F401
    import monai.handlers  # noqa: F401

    import monai_transfer.finetune  # noqa: F401
    import monai_transfer.ssl  # noqa: F401


# ------------------------------------------------------------------------------------------------------ console


class _ConsoleHandler(logging.Handler):
    """The study's console: records above its level, written around the progress bar."""

    def __init__(self, console: StudyConsole, level: int):
        super().__init__(level)
        self.console = console
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.write(self.format(record))
        except Exception:  # pragma: no cover - as logging does
            self.handleError(record)


def _outside_runs(record: logging.LogRecord) -> bool:
    """False while a cell's or pretraining's log file is on the root logger (its records go there only)."""
    return not any(isinstance(h, _RunFile) for h in logging.root.handlers)


def _not_progress(record: logging.LogRecord) -> bool:
    return record.name != logger.name  # progress lines are written to the console directly


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_ENGINE = "ignite.engine.engine."
_STARTING = re.compile(r"Engine run starting with max_epochs=(\d+)")
_RESUMING = re.compile(r"Engine run resuming from iteration \d+, epoch (\d+) until (\d+) epochs")
_EPOCH = re.compile(r"Epoch\[(\d+)\] Complete")


class _EpochWatcher(logging.Handler):
    """Follows a training run's epochs from ignite's INFO records of its trainer (never its evaluators)."""

    def __init__(self, on_start: Any, on_epoch: Any):
        super().__init__(logging.INFO)
        self.on_start, self.on_epoch = on_start, on_epoch

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(_ENGINE) or "Trainer" not in record.name[len(_ENGINE) :]:
            return
        msg = record.getMessage()
        if m := _STARTING.search(msg):
            self.on_start(0, int(m.group(1)))
        elif m := _RESUMING.search(msg):
            self.on_start(int(m.group(1)), int(m.group(2)))
        elif m := _EPOCH.search(msg):
            self.on_epoch(int(m.group(1)))


class StudyConsole:
    """A study's console and ``study.log`` for the time of the run (a context manager).

    Args:
        out: the study folder (``study.log`` and ``logs/`` go there).
        progress: show progress (a bar on a terminal, plain lines otherwise); False: warnings and the summary only.
        verbose: every INFO line on the console too (MONAI's epochs of every cell included).
        stream: where the console writes (default ``sys.stderr``).
        tty: a terminal or not (default: ``stream.isatty()``).
    """

    def __init__(self, out: str | os.PathLike, progress: bool = True, verbose: bool = False,
                 stream: TextIO | None = None, tty: bool | None = None):  # fmt: skip
        self.out = Path(out)
        self.stream = stream if stream is not None else sys.stderr
        self.progress = progress
        self.verbose = verbose
        self.tty = _isatty(self.stream) if tty is None else tty
        self._bar: Any = None
        self._stack: list[Any] = []

    # ------------------------------------------------------------------------------------------------ set-up
    def __enter__(self) -> StudyConsole:
        self.out.mkdir(parents=True, exist_ok=True)
        root = logging.root
        self._file = logging.FileHandler(self.out / "study.log", mode="a", encoding="utf-8")
        self._file.setLevel(logging.INFO)
        self._file.setFormatter(logging.Formatter(FORMAT))
        self._file.addFilter(_outside_runs)
        self._console = _ConsoleHandler(self, logging.INFO if self.verbose else logging.WARNING)
        self._console.addFilter(_not_progress)
        if not self.verbose:
            self._console.addFilter(_outside_runs)
        root.addHandler(self._file)
        root.addHandler(self._console)
        self._level = root.level
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        self._forward = _forwarded()
        self._forward.__enter__()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.showwarning = _show_warning_as_log
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close_bar()
        self._warnings.__exit__(*exc)
        self._forward.__exit__(*exc)
        root = logging.root
        root.setLevel(self._level)
        root.removeHandler(self._console)
        root.removeHandler(self._file)
        self._file.close()

    # ------------------------------------------------------------------------------------------------ output
    def write(self, line: str) -> None:
        """One line on the console, above the bar when one is drawn."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def say(self, line: str) -> None:
        """A progress line: on the console when progress is shown, always in ``study.log``."""
        if self.progress:
            self.write(line)
        logger.info(line)

    def _open_bar(self, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self._close_bar()
        if self.progress and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             leave=True)  # fmt: skip

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------------------------------------------ phases
    @contextmanager
    def pretraining(self, label: str, log: str | os.PathLike) -> Iterator[None]:
        """An in-study pretraining (or the reading of a finished one): its log to ``log``, its epochs on the console."""
        t0 = time.perf_counter()
        state = {"total": 0, "first": 0, "t_start": t0, "runs": 0}

        def on_start(done: int, total: int) -> None:
            state.update(total=total, first=done, t_start=time.perf_counter(), runs=state["runs"] + 1)
            what = f"continuing at epoch {done + 1} of {total}" if done else f"{total} epoch(s)"
            logger.info(f"pretraining {label}: {what}")
            self._open_bar(total, f"pretraining {label}", "epoch", initial=done)

        def on_epoch(epoch: int) -> None:
            total, first = state["total"], state["first"]
            per = (time.perf_counter() - state["t_start"]) / max(1, epoch - first)
            left = f", about {format_duration(per * (total - epoch))} left" if total > epoch else ""
            if self._bar is not None:
                self._bar.update(1)
                logger.info(f"pretraining {label}: epoch {epoch}/{total}{left}")
            else:
                self.say(f"pretraining {label}: epoch {epoch}/{total} ({format_duration(per)} each){left}")

        self.say(f"pretraining {label} (log: {log})")
        watcher = _EpochWatcher(on_start, on_epoch)
        logging.root.addHandler(watcher)
        try:
            with run_log(log, self.verbose, header=f"pretraining {label}"):
                yield
        finally:
            logging.root.removeHandler(watcher)
            self._close_bar()
        if state["runs"]:
            self.say(f"pretraining {label}: done in {format_duration(time.perf_counter() - t0)}")
        else:
            self.say(f"pretraining {label}: finished earlier, read back")

    def start(self, out: str | os.PathLike, start: Any, backbone: str, dims: int) -> Any:
        """The phase of a starting point: :meth:`pretraining` for one pretrained in the study, else nothing."""
        if not getattr(start, "pretrained_in_study", False):
            return nullcontext()
        log = pretrain_log_path(out, start.name, backbone, dims)
        return self.pretraining(f"{start.name} ({backbone}, {dims}D)", log)

    @contextmanager
    def quiet(self, log: str | os.PathLike | None = None) -> Iterator[None]:
        """A step whose records go to ``log`` (default: ``study.log`` only), not to the console unless verbose."""
        with run_log(log or self.out / "study.log", self.verbose):
            yield

    def cells(self, rows: Iterable[Mapping[str, Any]], total: int, name: str = "") -> Iterator[Mapping[str, Any]]:
        """Pass the executor's rows through, showing one step of progress per finished cell."""
        t0 = time.perf_counter()
        self._open_bar(total, f"study {name}".strip(), "cell")
        if total and self._bar is None:
            self.say(f"study {name}: {total} cell(s) to run; logs in {self.out / 'logs' / 'cells'}")
        done = failed = 0
        try:
            for row in rows:
                done += 1
                failed += row.get("status") != "ok"
                elapsed = time.perf_counter() - t0
                left = f"about {format_duration(elapsed / done * (total - done))} left" if done < total else "done"
                score = f"{row.get('metric')} {row['score']:.4f}" if row.get("score") is not None else "failed"
                what = ", ".join(str(row.get(k)) for k in ("target", "challenge", "start", "backbone") if row.get(k))
                line = f"cell {done}/{total} ({what}, seed {row.get('seed')}): {score} in " \
                       f"{format_duration(row.get('duration_s') or 0)}; {left}"  # fmt: skip
                if self._bar is not None:
                    self._bar.set_postfix_str(f"{failed} failed" if failed else "", refresh=False)
                    self._bar.update(1)
                    logger.info(line)
                else:
                    self.say(line)
                yield row
        finally:
            self._close_bar()
