"""The virtual environment MONAI Label runs in, created once and cached.

``monailabel==0.8.5`` cannot share the package's own environment: its declared dependencies pull numpy < 2 (through
pydicom-seg, which breaks pylibjpeg) and build ``sam2`` from source (minutes, gigabytes), and it fails to import with
pydicom 3. So it gets its own venv that *sees* the package's environment (``--system-site-packages`` plus a ``.pth``
that adds this interpreter's site folders, so a venv-installed ``monai_transfer`` with torch and MONAI is found as is)
and holds only what MONAI Label needs on top, with the versions that work:

* ``monailabel`` and ``pydicom-seg`` are installed without their declared dependencies (which name ``sam2`` and
  numpy < 2 / jsonschema < 4; pydicom-seg is used only for DICOM SEG output);
* the rest of MONAI Label's dependencies are installed normally, pinned where a newer release breaks it
  (``pydicom<3``, ``dicomweb-client==0.59.3``, ``pynetdicom<3``).

The venv is ready when its marker file holds the key of these requirements; an interrupted set-up leaves no marker
and is redone from scratch. A lock file keeps two set-ups (two test processes, two terminals) from racing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from monai_transfer.label.server import log_tail
from monai_transfer.utils.atomic import atomic_write_text

__all__ = [
    "MONAILABEL_VERSION",
    "LabelEnvironmentError",
    "default_environment_dir",
    "environment_python",
    "ensure_environment",
    "requirements",
]

logger = logging.getLogger(__name__)

MONAILABEL_VERSION = "0.8.5"

#: installed with ``--no-deps`` (see the module docstring)
WITHOUT_DEPENDENCIES: tuple[str, ...] = (f"monailabel=={MONAILABEL_VERSION}", "pydicom-seg==0.4.1")

#: MONAI Label 0.8.5's own dependencies minus sam2 (and ninja / numpymaxflow, needed only by SAM2 and scribbles)
DEPENDENCIES: tuple[str, ...] = (
    "pydicom>=2.4.4,<3",
    "dicomweb-client==0.59.3",
    "pynetdicom>=2.0.2,<3",
    "fastapi>=0.110.2",
    "uvicorn>=0.29.0",
    "pydantic>=2.7.0",
    "pydantic-settings>=2.2.1",
    "python-dotenv>=1.0.1",
    "python-multipart>=0.0.9",
    "httpx>=0.27.0",
    "schedule>=1.2.1",
    "timeloop>=1.0.2",
    "expiringdict>=1.2.2",
    "expiring_dict>=1.1.0",
    "cachetools>=5.3.3",
    "watchdog>=4.0.0",
    "pynrrd>=1.0.0",
    "girder-client>=3.2.3",
    "einops>=0.7.0",
    "pyyaml>=6.0.1",
    "filelock>=3.11.0",
    "passlib>=1.7.4",
    "pyjwt>=2.8.0",
    "bcrypt>=4.1.2",
    "shapely>=2.0.4",
    "requests>=2.31.0",
    "requests-toolbelt>=1.0.0",
    "urllib3>=2.2.1",
    "scikit-learn",
    "scipy",
    "google-auth>=2.29.0",
    "psutil",
    "scikit-image",
)

MARKER = ".monai_transfer_ready.json"
PARENT_PTH = "_monai_transfer_parent.pth"


class LabelEnvironmentError(RuntimeError):
    """The MONAI Label environment could not be created (the message names the log to read)."""


def requirements() -> dict[str, list[str]]:
    return {"without_dependencies": list(WITHOUT_DEPENDENCIES), "dependencies": list(DEPENDENCIES)}


def default_environment_dir() -> Path:
    """``$MONAI_TRANSFER_CACHE/monailabel-<version>-py<XY>`` (default cache: ``~/.cache/monai_transfer``)."""
    cache = Path(os.environ.get("MONAI_TRANSFER_CACHE", Path.home() / ".cache" / "monai_transfer")).expanduser()
    return cache / f"monailabel-{MONAILABEL_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"


def environment_python(env_dir: str | os.PathLike) -> Path:
    return Path(env_dir) / "bin" / "python"


def _parent_site_dirs() -> list[str]:
    """This interpreter's site folders, which the venv must see (they hold torch, MONAI and this package)."""
    paths = sysconfig.get_paths()
    dirs = [paths["purelib"], paths["platlib"]]
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def _key(parent_dirs: Sequence[str]) -> str:
    record = {"requirements": requirements(), "parent": list(parent_dirs), "python": sys.version}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _is_ready(env_dir: Path, key: str) -> bool:
    try:
        marker = json.loads((env_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("key") == key and environment_python(env_dir).exists()


@contextmanager
def _locked(env_dir: Path):
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f"{env_dir.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, what: str) -> None:
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = log_tail(log, 15)
        raise LabelEnvironmentError(f"{what} failed (exit {rc}); full log: {log}\n{tail}")


def ensure_environment(
    env_dir: str | os.PathLike | None = None, reinstall: bool = False, progress: Callable[[str], None] | None = None
) -> Path:
    """Create (once) the MONAI Label venv and return its Python.

    Idempotent: a venv whose marker matches the current requirements and site folders is returned as it is, in well
    under a second. Otherwise the folder is removed and built again (about a minute with a warm pip cache), then
    checked by importing MONAI Label's server app and this package's MONAI Label app inside it.

    Args:
        env_dir: where the venv lives; default :func:`default_environment_dir`.
        reinstall: rebuild even when the venv is ready.
        progress: called with one line per step (default: the module logger).

    Raises:
        LabelEnvironmentError: a step failed; the message names the log file.
    """
    say = progress or logger.info
    env = Path(env_dir) if env_dir is not None else default_environment_dir()
    env = env.expanduser().absolute()
    parents = _parent_site_dirs()
    key = _key(parents)
    with _locked(env):
        if not reinstall and _is_ready(env, key):
            return environment_python(env)
        if env.exists():
            say(f"removing the incomplete or outdated MONAI Label environment {env}")
            shutil.rmtree(env)
        say(f"creating the MONAI Label {MONAILABEL_VERSION} environment in {env} (once; about a minute)")
        log = env.parent / f"{env.name}.log"
        log.write_text("")
        _run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], log, "creating the venv")
        python = environment_python(env)
        site = Path(
            subprocess.check_output(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
            ).strip()
        )
        # addsitedir, not a bare path: it also runs the parent's .pth files (editable installs live in them)
        (site / PARENT_PTH).write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in parents))
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        say("installing monailabel and pydicom-seg without their declared dependencies")
        _run([*pip, "--no-deps", *WITHOUT_DEPENDENCIES], log, "installing monailabel")
        say("installing MONAI Label's other dependencies (pydicom<3, dicomweb-client 0.59.3, pynetdicom<3, ...)")
        _run([*pip, *DEPENDENCIES], log, "installing MONAI Label's dependencies")
        say("checking that MONAI Label and monai_transfer's app import in the environment")
        check = "import monailabel.app, monai_transfer.label.app; print(monailabel.__version__)"
        _run([str(python), "-c", check], log, "importing MONAI Label in the new environment")
        atomic_write_text(env / MARKER, json.dumps({"key": key, **requirements(), "parent": parents}, indent=2))
        say(f"MONAI Label environment ready: {python}")
        return python
