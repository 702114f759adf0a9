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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from monai_transfer.utils.atomic import atomic_write_json

__all__ = ["run_tour"]


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
    from monai_transfer.data import list_series, load_series, make_demo_data, scan
    from monai_transfer.networks import create_backbone, create_transfer_net, export_torchscript
    from monai_transfer.transforms import MRPercentileNormalize
    from monai_transfer.weights import Provenance, load_pretrained, save_pretrained

    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "exported").mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    summary: dict[str, Any] = {"seed": seed, "volume": [1, 1, size, size, size], "steps": {}}
    steps = tqdm(total=9, desc="tour", disable=not progress, unit="step")

    def done(name: str, info: dict[str, Any], t0: float) -> None:
        info["seconds"] = round(time.perf_counter() - t0, 2)
        summary["steps"][name] = info
        steps.set_postfix_str(name)
        steps.update(1)

    # 1. demo data, with DICOM series
    t0 = time.perf_counter()
    paths = make_demo_data(
        out / "demo_data", n_subjects=n_subjects, size=size, dicom=True, seed=seed, overwrite=True, n_unlabeled=4
    )
    done("demo_data", {"datalists": {k: v for k, v in paths.items() if k.endswith(("3d", "2d"))}}, t0)

    # 2. DICOM ingestion: index, then load one series in MONAI's convention
    t0 = time.perf_counter()
    series = scan(paths["dicom_root"], out / "dicom_index").as_dict()
    record = list_series(out / "dicom_index", include_quarantined=False)[0]
    image = load_series(out / "dicom_index", record["series_key"])
    image = MRPercentileNormalize()(image)
    done(
        "dicom_ingest",
        {
            "series": series.get("series"),
            "quarantined_files": series.get("quarantined_files"),
            "loaded_shape": list(image.shape),
            "spacing_mm": [round(float(v), 3) for v in image.pixdim[:3]],
        },
        t0,
    )

    # 3. a 2D RGB checkpoint in torchvision's layout (our ResNet keys are torchvision's; add its classifier)
    t0 = time.perf_counter()
    net2d = create_backbone("resnet18", spatial_dims=2, in_channels=3).eval()
    state = dict(net2d.state_dict())
    state["fc.weight"] = torch.randn(1000, 512, generator=gen) * 0.01
    state["fc.bias"] = torch.zeros(1000)
    ckpt2d = out / "checkpoints" / "resnet18_2d_rgb_torchvision_layout.pth"
    torch.save(state, ckpt2d)  # published torchvision files are bare state dicts
    done("write_2d_checkpoint", {"path": str(ckpt2d), "tensors": len(state)}, t0)

    # 4. strict import into a 3D, 1-channel backbone
    t0 = time.perf_counter()
    net3d = create_backbone("resnet18", spatial_dims=3, in_channels=1, pretrained=str(ckpt2d)).eval()
    report = net3d.load_report
    (out / "load_report.txt").write_text(report.to_table() + "\n")
    done(
        "import_2d_to_3d",
        {
            "adapter": report.adapter,
            "fraction_loaded": report.fraction_loaded,
            "dropped": report.dropped,
            "adapted": dict(report.adapted),
        },
        t0,
    )

    # 4b. the inflation rule, checked: constant-along-depth volume -> 2D response of a slice (away from the borders)
    t0 = time.perf_counter()
    slice2d = torch.rand(1, 1, size, size, generator=gen)
    vol = slice2d.unsqueeze(-1).expand(1, 1, size, size, size).contiguous()
    w2 = net2d.conv1.weight.sum(dim=1, keepdim=True)  # what RGB->grey surgery does
    with torch.no_grad():
        r2 = F.conv2d(slice2d, w2, stride=2, padding=3)
        r3 = net3d.conv1(vol)
    k = net3d.conv1.weight.shape[-1]
    with torch.no_grad():
        diff = float((r3[..., r3.shape[-1] // 2] - r2).abs().max().item())
    done("check_inflation", {"depth_kernel": k, "max_abs_diff_3d_vs_2d": diff}, t0)

    # 5. classification and segmentation networks on the imported weights
    t0 = time.perf_counter()
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
    done(
        "forward",
        {"output_shapes": shapes, "parameters": {t: sum(p.numel() for p in n.parameters()) for t, n in nets.items()}},
        t0,
    )

    # 6. TorchScript export, checked against eager
    t0 = time.perf_counter()
    exported = {}
    for task, net in nets.items():
        path = out / "exported" / f"resnet18_3d_{task}.ts"
        scripted = export_torchscript(net, x, path=path)
        with torch.no_grad():
            err = float((scripted(x) - outputs[task]).abs().max().item())
        exported[task] = {"path": str(path), "max_abs_diff_vs_eager": err}
    done("export", {"models": exported}, t0)

    # 7. save the 3D backbone with provenance, and read it back
    t0 = time.perf_counter()
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
    done("save_and_reload", {"path": str(saved), "provenance_method": rep2.provenance.method, "identical": same}, t0)

    # 8. self-supervised pretraining on the unlabeled pool (SimCLR, a few steps), then a strict load of its encoder
    t0 = time.perf_counter()
    from monai_transfer.ssl import pretrain

    ssl = pretrain(
        method="simclr",
        backbone="resnet18",
        spatial_dims=3,
        data=paths["unlabeled"],
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
    done(
        "ssl_pretrain",
        {
            "encoder": ssl["encoder"],
            "iterations": ssl["iterations"],
            "epoch_losses": ssl["epoch_losses"],
            "fraction_loaded_into_classifier": ssl_net.backbone.load_report.fraction_loaded,
        },
        t0,
    )
    steps.close()

    atomic_write_json(out / "summary.json", summary)
    return summary
