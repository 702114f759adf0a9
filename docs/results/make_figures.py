"""The figures of docs/results.md from the study folder the two specs beside this file wrote.

    python docs/results/make_figures.py runs/results docs/figures/results

Reads ``results/*.json`` (one row per cell) and each cell's ``test_cases.json``; writes ``paired_auroc.png`` (test
AUROC per seed, random and SimCLR paired by seed, per label fraction) and ``accuracy_threshold.png`` (accuracy at the
validation-chosen threshold against accuracy at 0.5, per seed), with the published MedMNIST v2 ResNet-18 (28) figures
and the test set's majority rate drawn in.
"""

from __future__ import annotations

import glob
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: MedMNIST v2 (Yang et al., Scientific Data 2023), PneumoniaMNIST, ResNet-18 (28), all 4,708 training images
PUBLISHED = {"auroc": 0.944, "accuracy": 0.854}
STARTS = ("random", "simclr_own_images")
LABELS = {"random": "random init", "simclr_own_images": "SimCLR, own images"}


def _rows(study: Path) -> dict[tuple[str, str], dict[int, dict]]:
    by: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for f in sorted(glob.glob(str(study / "results" / "*.json"))):
        r = json.loads(Path(f).read_text())
        if r.get("status") == "ok":
            by[(r["challenge"], r["start"])][int(r["seed"])] = r
    return by


def paired_auroc(by: dict, out: Path) -> None:
    challenges = sorted({c for c, _ in by})
    fig, axes = plt.subplots(1, len(challenges), figsize=(4.2 * len(challenges), 4.2), sharey=True)
    for ax, ch in zip(list(getattr(axes, "flat", [axes])), challenges):
        seeds = sorted(set(by[(ch, STARTS[0])]) & set(by[(ch, STARTS[1])]))
        for s in seeds:
            a, b = (by[(ch, st)][s]["score"] for st in STARTS)
            ax.plot([0, 1], [a, b], c="C2" if b > a else "C3", alpha=0.5, lw=1)
        for i, st in enumerate(STARTS):
            v = [by[(ch, st)][s]["score"] for s in seeds]
            ax.scatter([i] * len(v), v, s=14, c=f"C{i}", zorder=3)
            ax.hlines(sum(v) / len(v), i - 0.15, i + 0.15, colors="k", lw=2, zorder=4)
        ax.axhline(PUBLISHED["auroc"], ls="--", c="grey", lw=1, label="MedMNIST v2 ResNet-18, full data")
        ax.set(xticks=[0, 1], xticklabels=[LABELS[s] for s in STARTS], xlim=(-0.4, 1.4),
               title=f"{ch}: {len(seeds)} seeds (line: one seed)")  # fmt: skip
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test AUROC (624 images)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "paired_auroc.png", dpi=100)
    plt.close(fig)


def accuracy_threshold(by: dict, out: Path) -> None:
    challenges = sorted({c for c, _ in by})
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x, ticks = 0, []
    for ch in challenges:
        for i, st in enumerate(STARTS):
            rows = list(by[(ch, st)].values())
            for j, key in enumerate(("accuracy_at_0.5", "accuracy")):
                v = [r["metrics"][key] for r in rows]
                ax.scatter([x + 0.35 * j] * len(v), v, s=10, c="C7" if j == 0 else f"C{i}", alpha=0.7)
                ax.hlines(sum(v) / len(v), x + 0.35 * j - 0.12, x + 0.35 * j + 0.12, colors="k", lw=2)
            ticks.append((x + 0.175, f"{ch}\n{LABELS[st]}"))
            x += 1
    cases = json.loads(Path(next(iter(by.values()))[0]["run_dir"], "test_cases.json").read_text())["cases"]
    majority = max(p := sum(int(c["label"]) for c in cases) / len(cases), 1 - p)
    ax.axhline(majority, ls=":", c="C3", lw=1, label=f"majority rate of the test set ({majority:.3f})")
    ax.axhline(PUBLISHED["accuracy"], ls="--", c="grey", lw=1, label="MedMNIST v2 ResNet-18, full data")
    ax.set_xticks([t for t, _ in ticks], [lab for _, lab in ticks], fontsize=8)
    ax.set(ylabel="test accuracy", title="grey: at 0.5; colour: at the threshold chosen on validation (Youden)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_threshold.png", dpi=100)
    plt.close(fig)


def main(study: str, out: str) -> None:
    by = _rows(Path(study))
    Path(out).mkdir(parents=True, exist_ok=True)
    paired_auroc(by, Path(out))
    accuracy_threshold(by, Path(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
