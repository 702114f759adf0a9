"""Named study specs shipped with the package (``monai-transfer study run --preset NAME``)."""

from __future__ import annotations

from pathlib import Path

from monai_transfer.study.errors import SpecError

__all__ = ["list_presets", "preset_path"]

FOLDER = Path(__file__).parent


def list_presets() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = FOLDER / f"{name}.yaml"
    if not path.is_file():
        raise SpecError(f"no preset {name!r}; presets: {', '.join(list_presets())}")
    return path
