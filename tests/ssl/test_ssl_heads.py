"""Heads of the joint-embedding SSL methods: projector, predictor, DINO head (monai_transfer.ssl.heads).

The file is not called ``test_heads.py``: ``tests/networks/test_heads.py`` exists and the test folders have no
``__init__.py`` (a ``tests/ssl/__init__.py`` would make the package ``ssl`` and shadow the standard library)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from monai_transfer.ssl.heads import DINOHead, PredictionHead, ProjectionHead

B, IN = 6, 24


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("norm", ["batch", "layer", None])
def test_projection_head_shapes_and_layers(num_layers: int, norm: str | None) -> None:
    head = ProjectionHead(IN, hidden_dim=32, out_dim=16, num_layers=num_layers, norm=norm)
    assert head(_x()).shape == (B, 16)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert linears[0].in_features == IN and linears[-1].out_features == 16
    norm_type = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, None: type(None)}[norm]
    assert sum(isinstance(m, norm_type) for m in head.modules()) == (num_layers - 1 if norm else 0)
    # a Linear feeding a batch norm has no bias; any other keeps it
    for lin in linears[:-1]:
        assert (lin.bias is None) == (norm == "batch")
    assert linears[-1].bias is not None


def test_projection_head_last_norm_is_non_affine_batch_norm() -> None:
    head = ProjectionHead(IN, hidden_dim=32, out_dim=16, num_layers=3, last_norm="batch").train()
    last = head.layers[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert head.layers[-2].bias is None
    out = head(torch.randn(64, IN))
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(out.var(0, unbiased=False), torch.ones(16), atol=1e-3)


def test_layer_norm_head_is_per_sample() -> None:
    """With ``norm="layer"`` a sample's projection does not depend on the rest of the batch (the reason to offer it
    where ranks cannot share batch statistics); with batch norm in training mode it does."""
    x = _x()
    layer = ProjectionHead(IN, 32, 16, num_layers=3, norm="layer", last_norm="layer").train()
    assert torch.allclose(layer(x)[:2], layer(x[:2]), atol=1e-6)
    batch = ProjectionHead(IN, 32, 16, num_layers=3, norm="batch").train()
    assert not torch.allclose(batch(x)[:2], batch(x[:2]), atol=1e-4)


def test_projection_head_activation_from_monai_names() -> None:
    head = ProjectionHead(IN, 32, 16, act="gelu")
    assert any(isinstance(m, nn.GELU) for m in head.modules())


def test_prediction_head_defaults_to_input_size() -> None:
    head = PredictionHead(16, hidden_dim=8)
    assert head(torch.randn(B, 16)).shape == (B, 16)
    assert PredictionHead(16, hidden_dim=8, out_dim=4)(torch.randn(B, 16)).shape == (B, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"norm": "group"}, "norm"),
        ({"last_norm": "instance"}, "norm"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_dim": 0}, "positive"),
    ],
)
def test_projection_head_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProjectionHead(IN, **{"hidden_dim": 32, "out_dim": 16, **kwargs})


def test_heads_reject_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 24\)"):
        ProjectionHead(IN, 32, 16)(torch.randn(B, IN + 1))
    with pytest.raises(ValueError, match=r"\(B, 24\)"):
        DINOHead(IN, 64, 32, 8)(torch.randn(B, IN, 1))


def test_dino_head_weight_normalised_last_layer() -> None:
    head = DINOHead(IN, out_dim=64, hidden_dim=32, bottleneck_dim=8).train()
    assert parametrize.is_parametrized(head.last_layer, "weight")  # the non-deprecated weight_norm
    assert head.last_layer.bias is None
    assert any(isinstance(m, nn.GELU) for m in head.mlp) and not any(isinstance(m, nn.BatchNorm1d) for m in head.mlp)
    out = head(_x())
    assert out.shape == (B, 64)
    # unit-norm bottleneck times unit-norm prototypes: cosine logits
    assert out.abs().max() <= 1.0 + 1e-5
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0)
    (out**2).sum().backward()
    opt.step()
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(64), atol=1e-5)


def test_dino_head_trainable_norm_and_options() -> None:
    head = DINOHead(IN, out_dim=64, hidden_dim=32, bottleneck_dim=8, num_layers=2, norm="batch", norm_last_layer=False)
    assert head.last_layer.parametrizations.weight.original0.requires_grad
    assert sum(isinstance(m, nn.Linear) for m in head.mlp) == 2
    assert any(isinstance(m, nn.BatchNorm1d) for m in head.mlp)
    one_layer = DINOHead(IN, out_dim=64, bottleneck_dim=8, num_layers=1)
    assert [type(m) for m in one_layer.mlp] == [nn.Linear]
    assert one_layer(_x()).shape == (B, 64)


def test_dino_head_copies_and_reloads() -> None:
    """An EMA teacher is a deepcopy; a checkpoint is a state dict: both keep the parametrised last layer."""
    head = DINOHead(IN, out_dim=64, hidden_dim=32, bottleneck_dim=8).eval()
    x = _x()
    twin = copy.deepcopy(head)
    assert torch.equal(twin(x), head(x))
    fresh = DINOHead(IN, out_dim=64, hidden_dim=32, bottleneck_dim=8).eval()
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(fresh(x), head(x))
    assert "last_layer.parametrizations.weight.original1" in head.state_dict()
