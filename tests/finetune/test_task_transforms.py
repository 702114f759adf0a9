"""The fine-tuning transform chain: a robustness corruption changes what reaches the network, at every severity.

Issue 12: ``contrast`` sat before the per-image z-score normalisation, which undid it exactly (every severity gave the
clean score). The test runs the real chain of ``make_transforms`` on a file and compares the tensors the network gets.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_transfer.evaluation.checkpoint_robustness import CaseSeededCorruptd
from monai_transfer.finetune.task_transforms import make_transforms
from monai_transfer.transforms.corruptions import CORRUPTIONS


def _scan(path, shape: tuple[int, ...], seed: int = 0) -> str:
    """An MR-like image: a textured blob on a zero background, raw scanner-like intensities."""
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    tex = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.0)
    x = np.exp(-(g**2).sum(0) * 3) * (1 + 0.4 * tex) + 0.4 * (np.abs(g[0]) < 0.3)
    x = np.where((g**2).sum(0) < 0.8, 800.0 * x, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(x, np.eye(4)), str(path))
    return str(path)


CASES = [
    # (task, spatial_dims, file shape, keyword arguments of make_transforms)
    ("classification", 2, (48, 48), {"spatial_size": 32}),
    ("classification", 3, (20, 20, 20), {"spatial_size": None}),
    ("segmentation", 2, (40, 40), {"divisible_by": 16}),
]


@pytest.mark.parametrize("task,dims,shape,kw", CASES, ids=["cls2d-resized", "cls3d", "seg2d"])
def test_every_corruption_changes_the_network_input_at_every_severity(tmp_path, task, dims, shape, kw) -> None:
    image = _scan(tmp_path / "img.nii.gz", shape)
    entry = {"image": image, "label": 1}
    if task == "segmentation":
        label = tmp_path / "lab.nii.gz"
        nib.save(nib.Nifti1Image((np.asarray(nib.load(image).dataobj) > 300).astype(np.uint8), np.eye(4)), str(label))
        entry["label"] = str(label)

    def net_input(corruption=None) -> torch.Tensor:
        chain = make_transforms(task, dims, 2, train=False, corruption=corruption, **kw)
        return torch.as_tensor(chain(dict(entry))["image"]).double()

    clean = net_input()
    assert abs(float(clean.mean())) < 0.5  # the chain normalises: the corruptions act in the network's range
    for name in CORRUPTIONS:
        diffs = []
        for severity in range(1, 6):
            x = net_input(CaseSeededCorruptd(name, severity, seed=0))
            assert x.shape == clean.shape
            diffs.append(float((x - clean).abs().mean()))
        assert min(diffs) > 2e-3, f"{name}: some severity barely changes the network's input: {np.round(diffs, 4)}"
        assert diffs[-1] > diffs[0], f"{name}: severity 5 changes the input less than severity 1: {diffs}"
