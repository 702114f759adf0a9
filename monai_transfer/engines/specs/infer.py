"""An inference run's settings: a bundle's ``inference.json`` on a folder of images or a list of files
(``monai-transfer infer``, :func:`monai_transfer.bundle.infer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from monai_transfer.engines.specs.base import BaseRunSpec, SpecFieldError, setting

__all__ = ["InferSpec"]


@dataclass
class InferSpec(BaseRunSpec):
    """Everything an inference run needs (the shared fields of :class:`~monai_transfer.engines.specs.base.BaseRunSpec`
    first; ``device`` and ``amp`` reach the bundle's config ids of the same names)."""

    kind: ClassVar[str] = "inference"

    out_dir: str = setting("", "output folder", flag="--out", metavar="OUT")
    seed: int = setting(0, "inference draws nothing at random; kept for the shared surface", cli=False)
    bundle: str = setting("", "a bundle folder, or the folder 'monai-transfer finetune' wrote", positional=True)
    images: list[str] = setting(factory=list, help="a folder of images, or image files", nargs="+")
    overrides: Any = setting(None, "set any value of inference.json (--set ID=VALUE, repeatable)", cli=False)

    def check(self) -> None:
        if not self.bundle or not self.images or not self.out_dir:
            raise SpecFieldError("give the bundle, --images and --out")

    def config_values(self) -> list[str]:
        """``id=value`` settings of the bundle's config this spec makes (before the user's own ``--set``)."""
        out = [] if self.device is None else [f"device=$torch.device({self.device!r})"]
        return out + ([] if self.amp == "auto" else [f"amp={self.amp}"])
