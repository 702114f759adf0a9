"""RandRotate90Class(d): the label is the rotation actually applied (torch.rot90), collation, planes, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose

from monai_transfer.transforms import RandRotate90Class, RandRotate90Classd, RandRotate90ClassDict


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "shape,axes",
    [((8, 8), (0, 1)), ((6, 6, 5), (0, 1)), ((5, 6, 6), (1, 2)), ((6, 5, 6), (0, 2))],
    ids=["2d", "3d-axial", "3d-swin", "3d-coronal"],
)
def test_label_matches_the_rotation(shape, axes):
    x = torch.arange(float(np.prod(shape))).reshape(1, *shape)
    t = RandRotate90Class(spatial_axes=axes).set_random_state(0)
    seen = set()
    for _ in range(24):
        y = t(x)
        k = int(t.label())
        seen.add(k)
        assert torch.equal(torch.as_tensor(y), torch.rot90(x, k, (1 + axes[0], 1 + axes[1])))
    assert seen == {0, 1, 2, 3}


def test_label_type_and_collation():
    t = RandRotate90Classd("image", label_key="rot_v1").set_random_state(1)
    samples = [t({"image": torch.rand(1, 8, 8)}) for _ in range(3)]
    lab = samples[0]["rot_v1"]
    assert lab.dtype == torch.long and lab.ndim == 0
    batch = list_data_collate(samples)
    assert batch["rot_v1"].shape == (3,) and batch["rot_v1"].dtype == torch.long
    assert batch["image"].shape == (3, 1, 8, 8)


def test_dict_rotates_every_key_alike_and_keeps_metadata():
    a = MetaTensor(torch.rand(1, 8, 8, 4), meta={"filename_or_obj": "a.nii"})
    b = torch.rand(1, 8, 8, 4)
    t = RandRotate90ClassDict(["a", "b"], label_key="k").set_random_state(3)
    for _ in range(6):
        out = t({"a": a, "b": b})
        k = int(out["k"])
        assert torch.equal(out["a"].as_tensor(), torch.rot90(a.as_tensor(), k, (1, 2)))
        assert torch.equal(torch.as_tensor(out["b"]), torch.rot90(b, k, (1, 2)))
        assert isinstance(out["a"], MetaTensor) and out["a"].meta["filename_or_obj"] == "a.nii"


def test_prob_zero_and_num_classes():
    x = torch.rand(1, 8, 8)
    t = RandRotate90Class(prob=0.0).set_random_state(0)
    assert torch.equal(torch.as_tensor(t(x)), x) and int(t.label()) == 0
    two = RandRotate90Class(num_classes=2).set_random_state(0)
    ks = set()
    for _ in range(20):
        two(x)
        ks.add(int(two.label()))
    assert ks == {0, 1}
    with pytest.raises(ValueError):
        RandRotate90Class(spatial_axes=(1, 1))
    with pytest.raises(ValueError):
        RandRotate90Class(num_classes=5)


def test_seeding_and_global_rng():
    x = torch.rand(1, 8, 8)
    before = (torch.get_rng_state(), np.random.get_state())

    def labels(seed: int) -> list[int]:
        pipe = Compose([RandRotate90Classd("image")]).set_random_state(seed)
        return [int(pipe({"image": x})["rot"]) for _ in range(10)]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), before[1]))
