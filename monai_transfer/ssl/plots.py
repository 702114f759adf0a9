"""The loss curve of a pretraining run (``loss.png``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["plot_losses"]


def plot_losses(path: str | os.PathLike, losses: Sequence[float], title: str) -> None:
    """The loss curve as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_transfer.utils.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), list(losses), marker="o" if len(losses) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
