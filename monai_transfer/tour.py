"""The longest end-to-end path the package has, as one command (``monai-transfer tour``).

It does, in order, what a user does to bring a 2D ImageNet-style starting point to 3D medical scans:

1. demo data: simulated subjects built on the real MNI152 template, written as NIfTI and as DICOM series;
2. DICOM ingestion: the series are scanned into an index (geometry checked, identifiers hashed) and one is loaded
   as a ``MetaTensor`` in MONAI's convention, then MR percentile-normalised;
3. a 2D, 3-channel ResNet-18 checkpoint in torchvision's published layout (random weights, seed-fixed: nothing is
   downloaded);
4. strict import into a 3D, 1-channel ResNet-18 (channel surgery and I3D inflation) with the load report, and a
   numeric check of the inflation rule (a volume constant along depth gives the 2D response of one slice);
5. classification and segmentation ``TransferNet``s on the imported weights, run on the loaded scan;
6. TorchScript export of both, checked against eager outputs;
7. the 3D backbone saved with its provenance record and read back.

Outputs (all under ``out``): ``demo_data/``, ``dicom_index/``, ``checkpoints/``, ``load_report.txt``,
``exported/``, ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from monai_transfer.utils.atomic import atomic_write_json

__all__ = ["run_tour"]


class _Steps:
    """Times each step, records what it reports under ``summary["steps"]`` and advances the progress bar."""

    def __init__(self, summary: dict[str, Any], progress: bool) -> None:
        self.summary = summary
        self.bar = tqdm(total=9, desc="tour", disable=not progress, unit="step")

    def run(self, name: str, step: Callable[..., tuple[dict[str, Any], Any]], *args: Any) -> Any:
        """Run ``step(*args)`` (which returns what to record and what the later steps need); return the latter."""
        t0 = time.perf_counter()
        info, value = step(*args)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        self.summary["steps"][name] = info
        self.bar.set_postfix_str(name)
        self.bar.update(1)
        return value


def _demo_data(out: Path, seed: int, size: int, n_subjects: int) -> tuple[dict[str, Any], dict[str, str]]:
    """1. Demo data, with DICOM series (and a small unlabeled pool for step 8)."""
    from monai_transfer.data import make_demo_data

    paths = make_demo_data(
        out / "demo_data", n_subjects=n_subjects, size=size, dicom=True, seed=seed, overwrite=True, n_unlabeled=4
    )
    return {"datalists": {k: v for k, v in paths.items() if k.endswith(("3d", "2d"))}}, paths


def _dicom_ingest(out: Path, dicom_root: str) -> tuple[dict[str, Any], Any]:
    """2. DICOM ingestion: index the series, then load one in MONAI's convention, MR percentile-normalised."""
    from monai_transfer.data import list_series, load_series, scan
    from monai_transfer.transforms import MRPercentileNormalize

    series = scan(dicom_root, out / "dicom_index").as_dict()
    record = list_series(out / "dicom_index", include_quarantined=False)[0]
    image = load_series(out / "dicom_index", record["series_key"])
    image = MRPercentileNormalize()(image)
    info = {
        "series": series.get("series"),
        "quarantined_files": series.get("quarantined_files"),
        "loaded_shape": list(image.shape),
        "spacing_mm": [round(float(v), 3) for v in image.pixdim[:3]],
    }
    return info, image


def _write_2d_checkpoint(out: Path, gen: torch.Generator) -> tuple[dict[str, Any], tuple[torch.nn.Module, Path]]:
    """3. A 2D RGB checkpoint in torchvision's layout (our ResNet keys are torchvision's; add its classifier)."""
    from monai_transfer.networks import create_backbone

    net2d = create_backbone("resnet18", spatial_dims=2, in_channels=3).eval()
    state = dict(net2d.state_dict())
    state["fc.weight"] = torch.randn(1000, 512, generator=gen) * 0.01
    state["fc.bias"] = torch.zeros(1000)
    ckpt2d = out / "checkpoints" / "resnet18_2d_rgb_torchvision_layout.pth"
    torch.save(state, ckpt2d)  # published torchvision files are bare state dicts
    return {"path": str(ckpt2d), "tensors": len(state)}, (net2d, ckpt2d)


def _import_2d_to_3d(out: Path, ckpt2d: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    """4. Strict import into a 3D, 1-channel backbone; the load report is written beside the outputs."""
    from monai_transfer.networks import create_backbone

    net3d = create_backbone("resnet18", spatial_dims=3, in_channels=1, pretrained=str(ckpt2d)).eval()
    report = net3d.load_report
    (out / "load_report.txt").write_text(report.to_table() + "\n")
    info = {
        "adapter": report.adapter,
        "fraction_loaded": report.fraction_loaded,
        "dropped": report.dropped,
        "adapted": dict(report.adapted),
    }
    return info, net3d


def _check_inflation(
    net2d: torch.nn.Module, net3d: torch.nn.Module, size: int, gen: torch.Generator
) -> tuple[dict[str, Any], None]:
    """4b. The inflation rule, checked: constant-along-depth volume -> 2D response of a slice (away from the borders)."""
    slice2d = torch.rand(1, 1, size, size, generator=gen)
    vol = slice2d.unsqueeze(-1).expand(1, 1, size, size, size).contiguous()
    w2 = net2d.conv1.weight.sum(dim=1, keepdim=True)  # what RGB->grey surgery does
    with torch.no_grad():
        r2 = F.conv2d(slice2d, w2, stride=2, padding=3)
        r3 = net3d.conv1(vol)
    k = net3d.conv1.weight.shape[-1]
    with torch.no_grad():
        diff = float((r3[..., r3.shape[-1] // 2] - r2).abs().max().item())
    return {"depth_kernel": k, "max_abs_diff_3d_vs_2d": diff}, None


def _forward(ckpt2d: Path, image: Any) -> tuple[dict[str, Any], tuple[dict[str, Any], torch.Tensor, dict[str, Any]]]:
    """5. Classification and segmentation networks on the imported weights, run on the scan loaded from DICOM."""
    from monai_transfer.networks import create_transfer_net

    nets = {
        "classification": create_transfer_net(
            "resnet18", "classification", 3, 1, num_classes=2, pretrained=str(ckpt2d)
        ),
        "segmentation": create_transfer_net("resnet18", "segmentation", 3, 1, num_classes=3, pretrained=str(ckpt2d)),
    }
    x = image.as_tensor().unsqueeze(0).float()  # (1, 1, X, Y, Z): the scan loaded from DICOM
    shapes = {}
    outputs = {}
    with torch.no_grad():
        for task, net in nets.items():
            net.eval()
            outputs[task] = net(x)
            shapes[task] = list(outputs[task].shape)
    info = {"output_shapes": shapes, "parameters": {t: sum(p.numel() for p in n.parameters()) for t, n in nets.items()}}
    return info, (nets, x, outputs)


def _export(out: Path, nets: dict[str, Any], x: torch.Tensor, outputs: dict[str, Any]) -> tuple[dict[str, Any], None]:
    """6. TorchScript export of each network, checked against its eager output."""
    from monai_transfer.networks import export_torchscript

    exported = {}
    for task, net in nets.items():
        path = out / "exported" / f"resnet18_3d_{task}.ts"
        scripted = export_torchscript(net, x, path=path)
        with torch.no_grad():
            err = float((scripted(x) - outputs[task]).abs().max().item())
        exported[task] = {"path": str(path), "max_abs_diff_vs_eager": err}
    return {"models": exported}, None


def _save_and_reload(out: Path, net3d: torch.nn.Module, size: int) -> tuple[dict[str, Any], None]:
    """7. Save the 3D backbone with its provenance record, read it back and compare every tensor."""
    from monai_transfer.networks import create_backbone
    from monai_transfer.weights import Provenance, load_pretrained, save_pretrained

    prov = Provenance(
        method="tour: random 2D weights inflated to 3D (I3D, mean)",
        source_data="none (synthetic)",
        modality="none",
        input_size=(size, size, size),
        intensity_normalisation="none",
        licence="Apache-2.0",
    )
    saved = save_pretrained(net3d, out / "checkpoints" / "resnet18_3d_1ch.pt", provenance=prov)
    again = create_backbone("resnet18", spatial_dims=3, in_channels=1)
    rep2 = load_pretrained(again, str(saved))
    same = all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), net3d.state_dict().values()))
    return {"path": str(saved), "provenance_method": rep2.provenance.method, "identical": same}, None


def _ssl_pretrain(out: Path, unlabeled: str, seed: int) -> tuple[dict[str, Any], None]:
    """8. Self-supervised pretraining on the unlabeled pool (SimCLR, a few steps), then a strict load of its encoder."""
    from monai_transfer.networks import create_transfer_net
    from monai_transfer.ssl import pretrain

    ssl = pretrain(
        method="simclr",
        backbone="resnet18",
        spatial_dims=3,
        data=unlabeled,
        out=str(out / "pretrain_simclr"),
        modality="mr",
        roi_size=[32],
        batch_size=2,
        epochs=1,
        warmup_epochs=0,
        seed=seed,
        progress=False,
        tensorboard=False,
    )
    ssl_net = create_transfer_net("resnet18", "classification", 3, 1, num_classes=2, pretrained=ssl["encoder"])
    info = {
        "encoder": ssl["encoder"],
        "iterations": ssl["iterations"],
        "epoch_losses": ssl["epoch_losses"],
        "fraction_loaded_into_classifier": ssl_net.backbone.load_report.fraction_loaded,
    }
    return info, None


def run_tour(
    out: str | Path, seed: int = 0, size: int = 64, n_subjects: int = 6, progress: bool = True
) -> dict[str, Any]:
    """Run the tour and return the summary written to ``out/summary.json``.

    Args:
        out: output directory (created; nothing is written elsewhere).
        seed: seed of the demo data, the random weights and the inputs.
        size: edge of the demo volumes (a multiple of 32).
        n_subjects: simulated subjects in the demo data.
        progress: show progress bars.
    """
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "exported").mkdir(parents=True, exist_ok=True)
    # one generator for the tour's own draws (step 3's classifier, step 4b's slice), in this order; the global
    # seed fixes the networks' random initialisation
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    summary: dict[str, Any] = {"seed": seed, "volume": [1, 1, size, size, size], "steps": {}}
    steps = _Steps(summary, progress)
    paths = steps.run("demo_data", _demo_data, out, seed, size, n_subjects)
    image = steps.run("dicom_ingest", _dicom_ingest, out, paths["dicom_root"])
    net2d, ckpt2d = steps.run("write_2d_checkpoint", _write_2d_checkpoint, out, gen)
    net3d = steps.run("import_2d_to_3d", _import_2d_to_3d, out, ckpt2d)
    steps.run("check_inflation", _check_inflation, net2d, net3d, size, gen)
    nets, x, outputs = steps.run("forward", _forward, ckpt2d, image)
    steps.run("export", _export, out, nets, x, outputs)
    steps.run("save_and_reload", _save_and_reload, out, net3d, size)
    steps.run("ssl_pretrain", _ssl_pretrain, out, paths["unlabeled"], seed)
    steps.bar.close()

    atomic_write_json(out / "summary.json", summary)
    return summary
