"""The joint-embedding SSL methods (SimCLR, MoCo v2/v3, BYOL, SimSiam, Barlow Twins, VICReg, DINO), 2D and 3D.

Tiny on purpose (2 CPU cores): ResNet-10 at a quarter width (128 features), heads of 32-128 units, 32^2 / 16^3
inputs, batch 8, a few Adam steps on one fixed batch.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from monai_transfer.losses import DINOLoss
from monai_transfer.networks import create_backbone
from monai_transfer.ssl import MissingViewError, SSLMethod, create_method
from monai_transfer.ssl.methods._common import forward_views

METHODS = ("simclr", "moco_v2", "moco_v3", "byol", "simsiam", "barlow_twins", "vicreg", "dino")
TEACHER_METHODS = ("moco_v2", "moco_v3", "byol", "dino")
# head sizes for speed; every other option keeps its default
SMALL: dict[str, dict] = {
    "simclr": {"hidden_dim": 64, "projection_dim": 32},
    "moco_v2": {"hidden_dim": 64, "projection_dim": 32},
    "moco_v3": {"hidden_dim": 64, "projection_dim": 32},
    "byol": {"hidden_dim": 64, "projection_dim": 32},
    "simsiam": {"hidden_dim": 64, "projection_dim": 64, "prediction_dim": 16},
    "barlow_twins": {"projection_dim": 64},
    "vicreg": {"projection_dim": 64},
    "dino": {"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32},
}
ROI = {2: (32, 32), 3: (16, 16, 16)}
B = 8


def _backbone(spatial_dims: int) -> nn.Module:
    return create_backbone("resnet10", spatial_dims=spatial_dims, widen_factor=0.25)


def _method(name: str, spatial_dims: int, seed: int = 0, **kwargs) -> SSLMethod:
    torch.manual_seed(seed)
    return create_method(name, _backbone(spatial_dims), **{**SMALL[name], **kwargs}).train()


def _batch(name: str, spatial_dims: int, seed: int = 0, local_crops: int = 1) -> dict[str, torch.Tensor]:
    """Two global views (an image, and its mirror image with noise); DINO adds local crops at half size."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, *ROI[spatial_dims], generator=g)
    batch = {"image_v1": x, "image_v2": x.flip(-1) + 0.1 * torch.randn(x.shape, generator=g)}
    if name == "dino":
        half = tuple(r // 2 for r in ROI[spatial_dims])
        for i in range(local_crops):
            batch[f"image_v{3 + i}"] = torch.randn(B, 1, *half, generator=g)
    return batch


def _teacher_modules(method: SSLMethod) -> list[tuple[nn.Module, nn.Module]]:
    """(teacher, student) pairs of the EMA teacher."""
    head = "head" if hasattr(method, "teacher_head") else "projector"
    return [(method.teacher_backbone, method.backbone), (getattr(method, f"teacher_{head}"), getattr(method, head))]


def test_registry_rejects_a_method_that_does_not_fit_the_backbone() -> None:
    with pytest.raises(ValueError, match="mae"):
        create_method("mae", create_backbone("resnet18"))


@pytest.mark.parametrize("name", METHODS)
def test_builds_with_defaults_only(name: str) -> None:
    method = create_method(name, _backbone(2)).train()
    assert isinstance(method, SSLMethod) and method.method_name == name
    assert method.view_keys[:2] == ("image_v1", "image_v2")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 32, 32, generator=g)
    out = method({"image_v1": x, "image_v2": x.flip(-1)})
    assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
    for key, value in out.items():
        if key != "loss":
            assert not value.requires_grad, key
    teachers = [n for n, _ in method.named_children() if n.startswith("teacher_")]
    assert bool(teachers) == (name in TEACHER_METHODS)
    for teacher in teachers:
        t = getattr(method, teacher)
        assert t.training and not any(p.requires_grad for p in t.parameters())
    # teachers (and DINO's frozen prototype norms) are not optimised
    grouped = {id(p) for group in method.parameter_groups(0.05) for p in group["params"]}
    assert grouped == {id(p) for p in method.trainable_parameters()}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", METHODS)
def test_few_steps_on_one_batch_lower_the_loss(name: str, spatial_dims: int) -> None:
    method = _method(name, spatial_dims)
    batch = _batch(name, spatial_dims)
    if name == "moco_v2":
        # on one fixed batch the queue would fill with copies of the positives (false negatives) and the loss
        # rises by design; keep the random queue fixed here (enqueueing: test_moco_v2_queue_advances)
        method.criterion.eval()
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-3)
    losses = []
    for step in range(5):
        out = method(batch)
        opt.zero_grad()
        out["loss"].backward()
        if step == 0:
            grads = [p.grad for p in method.backbone.parameters()]
            assert all(g is not None for g in grads), "some backbone parameters get no gradient"
            assert sum(float(g.abs().sum()) for g in grads) > 0
            for name_, p in method.named_parameters():
                if name_.startswith("teacher_"):
                    assert p.grad is None, name_
        opt.step()
        method.update_teacher()
        losses.append(out["loss"].detach().item())
    assert all(torch.isfinite(torch.tensor(losses)))
    drop = (losses[0] - losses[-1]) / max(1.0, abs(losses[0]))
    assert drop > 0.05, f"{name} {spatial_dims}D losses {losses}"


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", TEACHER_METHODS)
def test_update_teacher_is_an_ema(name: str, spatial_dims: int) -> None:
    method = _method(name, spatial_dims)
    with torch.no_grad():  # move the student away from its copy
        for p in method.trainable_parameters():
            p.add_(torch.randn_like(p))
    pairs = _teacher_modules(method)
    before = [[p.clone() for p in t.parameters()] for t, _ in pairs]
    method.teacher_momentum = 1.0
    method.update_teacher()
    for (teacher, _), old in zip(pairs, before):
        assert all(torch.equal(p, q) for p, q in zip(teacher.parameters(), old))
    method.teacher_momentum = 0.75
    method.update_teacher()
    changed = 0
    for (teacher, student), old in zip(pairs, before):
        for t, s, o in zip(teacher.parameters(), student.parameters(), old):
            assert torch.allclose(t, 0.75 * o + 0.25 * s, atol=1e-6)
            changed += int(not torch.equal(t, o))
    assert changed > 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", METHODS)
def test_export_encoder_has_the_backbone_keys(name: str, spatial_dims: int) -> None:
    method = _method(name, spatial_dims)
    encoder = method.export_encoder()
    assert set(encoder.state_dict()) == set(method.backbone.state_dict())
    if name == "dino":  # the paper evaluates the teacher; the export is a trainable copy of it
        assert encoder is not method.teacher_backbone
        assert all(p.requires_grad for p in encoder.parameters())
        teacher = method.teacher_backbone.state_dict()
        assert all(torch.equal(v, teacher[k]) for k, v in encoder.state_dict().items())
    else:  # the online / query encoder
        assert encoder is method.backbone
    x = torch.randn(2, 1, *ROI[spatial_dims])
    assert encoder.eval().forward_features(x).shape == (2, method.backbone.num_features)


@pytest.mark.parametrize("name", METHODS)
def test_missing_view_is_named(name: str) -> None:
    method = _method(name, 2)
    batch = _batch(name, 2)
    del batch["image_v2"]
    with pytest.raises(MissingViewError, match="image_v2"):
        method(batch)


def test_dino_gap_in_views_is_named() -> None:
    method = _method("dino", 2)
    batch = _batch("dino", 2, local_crops=3)
    del batch["image_v4"]
    with pytest.raises(MissingViewError, match="image_v4"):
        method(batch)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dino_multi_crop_matches_a_per_view_reference(spatial_dims: int) -> None:
    """Teacher on the 2 global views, student on all 2 + 4 views (local crops at half size), loss at the
    method's ``teacher_temperature``. In eval mode batch norms use running statistics, so a per-view forward is the
    reference for the grouped one."""
    method = _method("dino", spatial_dims).eval()
    method.teacher_temperature = 0.06
    batch = _batch("dino", spatial_dims, local_crops=4)
    reference_loss = copy.deepcopy(method.criterion)
    center = method.criterion.center.clone()
    out = method(batch)
    with torch.no_grad():
        views = [batch[f"image_v{i}"] for i in range(1, 7)]
        t = [method.teacher_head(method.teacher_backbone.forward_features(v)) for v in views[:2]]
        s = [method.head(method.backbone.forward_features(v)) for v in views]
        expected = reference_loss(t, s, teacher_temp=0.06)
        other_temperature = copy.deepcopy(reference_loss)(t, s, teacher_temp=0.04)
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    assert not torch.allclose(expected, other_temperature)
    assert not torch.equal(method.criterion.center, center)  # DINOLoss moved the center
    assert isinstance(method.criterion, DINOLoss)


def test_dino_cancel_last_layer_gradients() -> None:
    method = _method("dino", 2)
    method(_batch("dino", 2))["loss"].backward()
    assert method.head.last_layer.parametrizations.weight.original1.grad is not None
    method.cancel_last_layer_gradients()
    assert all(p.grad is None for p in method.head.last_layer.parameters())
    assert method.head.mlp[0].weight.grad is not None


def test_moco_v2_queue_advances() -> None:
    method = _method("moco_v2", 2, queue_size=20)
    batch = _batch("moco_v2", 2)
    queue = method.criterion.queue.clone()
    with torch.no_grad():
        keys = method.teacher_projector(method.teacher_backbone.forward_features(batch["image_v2"]))
    method(batch)
    assert int(method.criterion.queue_ptr) == B
    assert torch.allclose(method.criterion.queue[:B], nn.functional.normalize(keys, dim=1), atol=1e-5)
    assert torch.equal(method.criterion.queue[B:], queue[B:])
    method.eval()
    method(batch)
    assert int(method.criterion.queue_ptr) == B  # no enqueueing outside training


def test_vicreg_returns_its_terms() -> None:
    method = _method("vicreg", 2)
    out = method(_batch("vicreg", 2))
    assert set(out) == {"loss", "invariance", "variance", "covariance"}
    c = method.criterion
    weighted = c.lambda_param * out["invariance"] + c.mu_param * out["variance"] + c.nu_param * out["covariance"]
    assert torch.allclose(out["loss"].detach(), weighted, rtol=1e-5)


def test_views_share_batch_statistics_only_where_the_paper_does() -> None:
    """SimCLR runs both views as one batch (official code); BYOL one view at a time in the online network and in the
    target (per-view batch norm, official code). Counted at the backbones' stem convolution."""
    calls: dict[str, list[int]] = {}
    for name in ("simclr", "byol"):
        method = _method(name, 2)
        calls[name] = []
        stems = [method.backbone.conv1] + ([method.teacher_backbone.conv1] if name == "byol" else [])
        for stem in stems:
            stem.register_forward_pre_hook(lambda _m, args, seen=calls[name]: seen.append(args[0].shape[0]))
        method(_batch(name, 2))
    assert calls == {"simclr": [2 * B], "byol": [B, B, B, B]}


def test_forward_views_concatenates_when_the_result_is_the_same() -> None:
    torch.manual_seed(0)
    views = [torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 3)]
    for norm, expected_calls in ((nn.LayerNorm(5), [8]), (nn.BatchNorm1d(5), [4, 4])):
        module = nn.Sequential(nn.Linear(6, 5), norm)
        seen: list[int] = []
        module.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0].shape[0]))
        out = forward_views(module, views[:2], module, separate=True)
        assert seen == expected_calls
        assert all(torch.allclose(o, module(v), atol=1e-6) for o, v in zip(out, views[:2]))
    # without ``separate``, runs of equal shapes are grouped (DINO's global crops, then its local crops)
    seen = []
    module = nn.Identity()
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    out = forward_views(module, views, module, separate=False)
    assert seen == [8, 4]
    assert all(torch.equal(o, v) for o, v in zip(out, views))


@pytest.mark.parametrize("name", ["simclr", "moco_v3", "byol", "simsiam", "barlow_twins", "vicreg", "dino"])
def test_layer_norm_heads_have_no_batch_norm(name: str) -> None:
    method = _method(name, 2, head_norm="layer")
    heads = [m for n, m in method.named_children() if n not in ("backbone", "teacher_backbone", "criterion")]
    assert heads and not any(isinstance(m, nn.BatchNorm1d) for h in heads for m in h.modules())
    assert any(isinstance(m, nn.LayerNorm) for h in heads for m in h.modules())


def test_transformer_backbone_runs_both_views_in_one_call_with_paper_defaults() -> None:
    """A ViT has no batch statistics, so MoCo v3 sends both views through it at once (the same result, faster);
    its ViT settings are the paper's: a 3-layer projector and temperature 0.2."""
    torch.manual_seed(0)
    backbone = create_backbone("vit_small_patch16", spatial_dims=2, img_size=32)
    method = create_method("moco_v3", backbone, hidden_dim=32, projection_dim=16).train()
    assert method.criterion.temperature == 0.2
    assert sum(isinstance(m, nn.Linear) for m in method.projector.modules()) == 3
    seen: list[int] = []
    backbone.patch_embedding.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    batch = {"image_v1": torch.randn(4, 1, 32, 32), "image_v2": torch.randn(4, 1, 32, 32)}
    assert torch.isfinite(method(batch)["loss"])
    assert seen == [8]
    resnet = create_method("moco_v3", _backbone(2), hidden_dim=32, projection_dim=16)
    assert resnet.criterion.temperature == 1.0
    assert sum(isinstance(m, nn.Linear) for m in resnet.projector.modules()) == 2
