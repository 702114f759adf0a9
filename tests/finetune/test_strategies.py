"""Each strategy freezes, unfreezes and sets learning rates exactly as documented."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from monai_transfer.finetune import (
    STRATEGIES,
    create_strategy,
    list_strategies,
    no_weight_decay_names,
    trainable_parameter_names,
)
from monai_transfer.networks import create_transfer_net
from monai_transfer.networks.base import stage_of_key

LR = 1e-2


@pytest.fixture
def net():
    torch.manual_seed(0)
    return create_transfer_net("resnet10", task="classification", spatial_dims=2, in_channels=1, num_classes=3)


def stages_of(net):
    return net.param_stages()


def names_in(net, stages):
    st = stages_of(net)
    return {n for n, _ in net.named_parameters() if stage_of_key(n, st) in set(stages)}


def group_ids(groups):
    return {id(p) for g in groups for p in g["params"]}


def ids_of(net, names):
    params = dict(net.named_parameters())
    return {id(params[n]) for n in names}


BACKBONE = ["backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4"]


def test_registry_lists_names():
    assert list_strategies() == ["full", "linear-probe", "freeze-k", "llrd", "gradual-unfreeze", "lp-ft"]
    assert set(STRATEGIES) == set(list_strategies())


def test_unknown_strategy_lists_known():
    with pytest.raises(ValueError, match="unknown fine-tuning strategy 'bogus'.*linear-probe.*lp-ft"):
        create_strategy("bogus")
    with pytest.raises(ValueError, match="does not accept"):
        create_strategy("full", decay=0.5)


def test_full_trains_everything(net):
    s = create_strategy("full", lr=LR)
    groups = s.apply(net)
    all_names = {n for n, _ in net.named_parameters()}
    assert trainable_parameter_names(net) == all_names
    assert group_ids(groups) == {id(p) for p in net.parameters()}
    assert all(g["lr"] == LR for g in groups)
    assert len(s.handlers(torch.optim.SGD(groups))) == 0


def test_weight_decay_not_on_norms_or_biases(net):
    groups = create_strategy("full", lr=LR, weight_decay=0.05).apply(net)
    no_decay = ids_of(net, no_weight_decay_names(net))
    for g in groups:
        ids = {id(p) for p in g["params"]}
        if g["decay"]:
            assert g["weight_decay"] == 0.05 and not ids & no_decay
            assert all(p.ndim > 1 for p in g["params"])
        else:
            assert g["weight_decay"] == 0.0 and ids <= no_decay
    # every BN weight and bias and the head bias lands in a no-decay group
    bn = {n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    expected = {f"{m}.{p}" for m in bn for p in ("weight", "bias")} | {"head.fc.bias"}
    assert expected <= no_weight_decay_names(net)
    assert "head.fc.weight" not in no_weight_decay_names(net)


def test_linear_probe_freezes_backbone_and_bn_stats(net):
    s = create_strategy("linear-probe", lr=LR, head_lr_mult=10)
    groups = s.apply(net)
    assert trainable_parameter_names(net) == names_in(net, ["head"])
    assert group_ids(groups) == ids_of(net, names_in(net, ["head"]))
    assert all(g["lr"] == pytest.approx(LR * 10) for g in groups)
    # the trainer calls net.train(); batch-norm running statistics must still not move
    net.train()
    bn = net.backbone.bn1
    before = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    net(torch.randn(4, 1, 32, 32) * 3 + 1)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])
    assert not bn.training and not net.backbone.layer4[0].bn2.training
    # and a backward pass gives gradients to the head only
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all((p.grad is None) == (not p.requires_grad) for p in net.parameters())


def test_reapply_full_undoes_linear_probe(net):
    s = create_strategy("linear-probe")
    s.apply(net)
    s.reset(net)
    net.train()
    net(torch.randn(2, 1, 32, 32))
    assert net.backbone.bn1.training and net.backbone.bn1.num_batches_tracked.item() == 1
    assert trainable_parameter_names(net) == {n for n, _ in net.named_parameters()}


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_freeze_k(net, k):
    s = create_strategy(f"freeze-{k}", lr=LR)
    groups = s.apply(net)
    frozen = names_in(net, BACKBONE[:k])
    trainable = {n for n, _ in net.named_parameters()} - frozen
    assert trainable_parameter_names(net) == trainable
    assert group_ids(groups) == ids_of(net, trainable)
    assert {g["stage"] for g in groups} == set(BACKBONE[k:]) | {"head"}
    net.train()
    net(torch.randn(2, 1, 32, 32))
    if k >= 1:
        assert net.backbone.bn1.num_batches_tracked.item() == 0
    if k < 5:
        assert net.backbone.layer4[0].bn1.num_batches_tracked.item() == 1


def test_freeze_k_too_large(net):
    with pytest.raises(ValueError, match="k=6 but the backbone has 5 stages"):
        create_strategy("freeze-k", k=6).apply(net)


@pytest.mark.parametrize("decay", [0.5, 0.75])
def test_llrd_follows_formula(net, decay):
    s = create_strategy("llrd", lr=LR, decay=decay, head_lr_mult=3)
    groups = s.apply(net)
    n = len(BACKBONE)
    assert trainable_parameter_names(net) == {n_ for n_, _ in net.named_parameters()}
    for g in groups:
        if g["stage"] == "head":
            assert g["lr"] == pytest.approx(LR * 3)
        else:
            i = BACKBONE.index(g["stage"])
            assert math.isclose(g["lr"], LR * decay ** (n - i), rel_tol=1e-12)
    # every parameter sits in exactly one group, the group of its own stage
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    for g in groups:
        assert ids_of(net, names_in(net, [g["stage"]])) >= {id(p) for p in g["params"]}


def _run_epochs(handler_list, n_epochs, record):
    engine = Engine(lambda e, b: None)
    for h in handler_list:
        h.attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def _rec(e):  # registered after the strategy handler, so it sees the epoch's state
        record(e.state.epoch)

    engine.run([0], max_epochs=n_epochs)


def test_gradual_unfreeze_schedule(net):
    s = create_strategy("gradual-unfreeze", lr=LR, every_n_epochs=2)
    groups = s.apply(net)
    opt = torch.optim.SGD(groups, lr=LR)
    assert trainable_parameter_names(net) == names_in(net, ["head"])
    seen = {}

    def record(epoch):
        seen[epoch] = (
            trainable_parameter_names(net),
            group_ids(opt.param_groups),
            [g["stage"] for g in opt.param_groups],
        )

    _run_epochs(s.handlers(opt), 12, record)
    for epoch in range(1, 13):
        n_unfrozen = min(len(BACKBONE), (epoch - 1) // 2)
        expected = ["head"] + BACKBONE[len(BACKBONE) - n_unfrozen :]
        names, ids, group_stages = seen[epoch]
        assert names == names_in(net, expected), epoch
        assert ids == ids_of(net, names_in(net, expected)), epoch
        assert set(group_stages) == set(expected)
    # the deepest stage came in first
    stage_order = list(dict.fromkeys(g["stage"] for g in opt.param_groups))
    assert stage_order == ["head"] + BACKBONE[::-1]
    assert all(g["lr"] == LR for g in opt.param_groups)


def test_gradual_unfreeze_bn_follows_unfreezing(net):
    s = create_strategy("gradual-unfreeze", every_n_epochs=1)
    opt = torch.optim.SGD(s.apply(net), lr=LR)
    (h,) = s.handlers(opt)
    net.train()
    net(torch.randn(2, 1, 32, 32))
    assert net.backbone.layer4[0].bn1.num_batches_tracked.item() == 0
    h.step(2)  # epoch 2: layer4 trains, its BN statistics now update
    net.train()
    net(torch.randn(2, 1, 32, 32))
    assert net.backbone.layer4[0].bn1.num_batches_tracked.item() == 1
    assert net.backbone.layer3[0].bn1.num_batches_tracked.item() == 0


@pytest.mark.parametrize("lp_epochs", [1, 3])
def test_lp_ft_switches_at_e1(net, lp_epochs):
    s = create_strategy("lp-ft", lr=LR, lp_epochs=lp_epochs, ft_lr_scale=0.1, head_lr_mult=5)
    opt = torch.optim.AdamW(s.apply(net), lr=LR)
    seen = {}

    def record(epoch):
        seen[epoch] = (trainable_parameter_names(net), {g["stage"]: g["lr"] for g in opt.param_groups})

    _run_epochs(s.handlers(opt), lp_epochs + 2, record)
    all_names = {n for n, _ in net.named_parameters()}
    for epoch in range(1, lp_epochs + 1):
        names, lrs = seen[epoch]
        assert names == names_in(net, ["head"])
        assert lrs == {"head": pytest.approx(LR * 5)}
    for epoch in (lp_epochs + 1, lp_epochs + 2):
        names, lrs = seen[epoch]
        assert names == all_names
        assert lrs["head"] == pytest.approx(LR * 5 * 0.1)
        assert all(lrs[s_] == pytest.approx(LR * 0.1) for s_ in BACKBONE)
    assert group_ids(opt.param_groups) == {id(p) for p in net.parameters()}


def test_strategy_needs_param_stages():
    with pytest.raises(TypeError, match="param_stages"):
        create_strategy("full").apply(torch.nn.Linear(2, 2))


def test_strategy_to_dict_roundtrip():
    s = create_strategy("llrd", lr=0.1, decay=0.6, head_lr_mult=2)
    d = s.to_dict()
    again = create_strategy(d.pop("name"), **d)
    assert again.to_dict() == s.to_dict()
