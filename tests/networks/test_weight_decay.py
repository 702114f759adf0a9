"""One no-weight-decay rule for fine-tuning and pretraining (issue 9: the two stacks had rules that disagreed)."""

from __future__ import annotations

from monai_transfer.finetune import create_strategy
from monai_transfer.networks import create_backbone, create_transfer_net
from monai_transfer.networks.weight_decay import no_weight_decay_names
from monai_transfer.ssl.registry import create_method


def test_vit_embeddings_tokens_norms_and_biases_are_not_decayed():
    vit = create_backbone("vit_small_patch16", spatial_dims=2, in_channels=1, img_size=32)
    names = no_weight_decay_names(vit)
    params = dict(vit.named_parameters())
    assert any("pos_embed" in n or "position_embeddings" in n for n in names)
    assert all(params[n].ndim <= 1 or "embed" in n or "token" in n for n in names)
    assert not any(n.endswith("weight") and params[n].ndim >= 2 and "embed" not in n for n in names)


def test_pretraining_and_fine_tuning_split_the_same_parameters():
    backbone = create_backbone("resnet10", spatial_dims=2, in_channels=1)
    method = create_method("simclr", backbone)
    ssl_no_decay = {id(p) for g in method.parameter_groups(0.05) if g["weight_decay"] == 0.0 for p in g["params"]}
    expected = {id(p) for n, p in method.named_parameters() if n in no_weight_decay_names(method) and p.requires_grad}
    assert ssl_no_decay == expected and ssl_no_decay
    net = create_transfer_net("resnet10", task="classification", spatial_dims=2, num_classes=2)
    groups = create_strategy("full", lr=1e-3, weight_decay=0.05).apply(net)
    ft_no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert ft_no_decay == {id(p) for n, p in net.named_parameters() if n in no_weight_decay_names(net)}
