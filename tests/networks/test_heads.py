"""ClassificationHead: linear and MLP heads, multi-class and multi-label logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_transfer.networks.heads import ClassificationHead


@pytest.mark.parametrize(
    "kwargs, n_linear",
    [
        ({}, 1),
        ({"hidden_dims": (32,)}, 2),
        ({"hidden_dims": [32, 16], "dropout": 0.3, "norm": "batch", "act": "gelu"}, 3),
        ({"hidden_dims": (32,), "norm": "layer", "act": ("leakyrelu", {"negative_slope": 0.1})}, 2),
    ],
)
def test_shapes_and_layers(kwargs, n_linear):
    head = ClassificationHead(in_features=64, num_classes=5, **kwargs).eval()
    assert head(torch.randn(3, 64)).shape == (3, 5)
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == n_linear
    assert head.needs_features is False


def test_norm_layers_are_the_requested_ones():
    assert any(isinstance(m, nn.BatchNorm1d) for m in ClassificationHead(8, 2, (4,), norm="batch").modules())
    assert any(isinstance(m, nn.LayerNorm) for m in ClassificationHead(8, 2, (4,), norm="layer").modules())


def test_dropout_only_in_training():
    head = ClassificationHead(16, 4, hidden_dims=(16,), dropout=0.5)
    x = torch.randn(8, 16)
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    head.train()
    torch.manual_seed(0)
    a = head(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, head(x))


def test_multi_class_logits_pair_with_cross_entropy():
    head = ClassificationHead(16, 4).eval()
    logits = head(torch.randn(6, 16))
    probs = head.probabilities(logits)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))
    loss = nn.CrossEntropyLoss()(logits, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert torch.isfinite(loss)


def test_multi_label_logits_are_independent_sigmoids():
    head = ClassificationHead(16, 4, multi_label=True).eval()
    logits = head(torch.randn(6, 16))
    probs = head.probabilities(logits)
    torch.testing.assert_close(probs, torch.sigmoid(logits))
    assert not torch.allclose(probs.sum(dim=1), torch.ones(6))
    targets = torch.randint(0, 2, (6, 4)).float()  # several findings per image
    loss = nn.BCEWithLogitsLoss(pos_weight=torch.full((4,), 2.0))(logits, targets)
    loss.backward()
    assert head.fc.weight.grad is not None


def test_scripts_with_probabilities():
    head = ClassificationHead(16, 3, hidden_dims=(8,), dropout=0.1, norm="batch", multi_label=True).eval()
    scripted = torch.jit.script(head)
    x = torch.randn(2, 16)
    torch.testing.assert_close(scripted(x), head(x))
    torch.testing.assert_close(scripted.probabilities(head(x)), torch.sigmoid(head(x)))


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(ValueError):
        ClassificationHead(0, 3)
    with pytest.raises(ValueError):
        ClassificationHead(16, 0)
    with pytest.raises(ValueError):
        ClassificationHead(16, 3, dropout=1.0)
    head = ClassificationHead(16, 3)
    with pytest.raises(ValueError, match="expects input"):
        head(torch.randn(2, 8))
    with pytest.raises(ValueError, match="expects input"):
        head(torch.randn(2, 16, 1, 1))
