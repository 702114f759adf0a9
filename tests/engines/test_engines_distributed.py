"""DDP set-up helpers and the multi-GPU overrides of a train.json (single process; torchrun runs are in
tests/integration/test_finetune_resume_ddp.py)."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from monai.handlers import StatsHandler, ValidationHandler

from monai_transfer.bundle.templates.multi_gpu import multi_gpu_overrides
from monai_transfer.engines import distributed as ddp
from monai_transfer.engines import main_process_handlers, per_rank_batch_size
from monai_transfer.finetune.trainer import AtomicBestCheckpoint


def test_per_rank_batch_size():
    assert per_rank_batch_size(8) == 8  # one process
    assert per_rank_batch_size(8, num_replicas=2) == 4
    with pytest.raises(ValueError, match="multiple of the number of ranks"):
        per_rank_batch_size(6, num_replicas=4)
    with pytest.raises(ValueError, match="positive"):
        per_rank_batch_size(0)


def test_writers_run_on_rank_zero_only(monkeypatch):
    stats = StatsHandler(iteration_log=False)
    best = AtomicBestCheckpoint("unused.pt", torch.nn.Linear(1, 1), metric_name="m")
    validation = ValidationHandler(interval=1)
    handlers = [stats, validation, best]
    assert main_process_handlers(handlers) == handlers and main_process_handlers(None) is None
    monkeypatch.setattr(ddp, "is_main_process", lambda: False)
    assert main_process_handlers(handlers) == [validation]  # validation is sharded and gathered: every rank
    assert main_process_handlers(handlers, main_only=()) == handlers
    # finetune's writer says it writes only (engines names no class above it); an explicit list is the whole rule
    assert AtomicBestCheckpoint.main_process_only and best not in main_process_handlers(handlers)
    assert "finetune" not in " ".join(ddp.MAIN_PROCESS_ONLY)


def test_single_process_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ddp.init_distributed() is False and not ddp.is_distributed()
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert ddp.wrap_ddp(net, "cpu") is net and ddp.unwrap(net) is net
    assert ddp.local_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ddp.local_device("cuda") == torch.device("cuda", 1)
    ddp.cleanup()


def _toy(tmp_path):
    from finetune_toy import toy_train_config

    return toy_train_config(tmp_path)


def test_overrides_of_the_toy_config(tmp_path):
    config = _toy(tmp_path)
    out = multi_gpu_overrides(config)
    assert out["initialize"][0] == {"_target_": "monai_transfer.engines.init_distributed"}
    assert out["initialize"][1:] == config["initialize"] and out["finalize"][-1]["_target_"].endswith("cleanup")
    assert out["network_local"] == config["network"] and out["network"]["module"] == "@network_local"
    assert out["network"]["_target_"].endswith("wrap_ddp") and out["network"]["_requires_"] == "@optimizer"
    assert out["optimizer"]["params"] == "$@network_local.parameters()"
    assert "train#sampler" not in out  # the config's EpochSampler already splits by rank
    assert out["train#dataloader#batch_size"]["global_batch_size"] == "@batch_size"
    assert out["validate#dataloader#sampler"] == "@validate#sampler"
    assert out["validate#sampler"]["dataset"] == "@validate#dataset"
    assert out["train#trainer#train_handlers"] == "$monai_transfer.engines.main_process_handlers(@train#handlers)"
    assert out["validate#evaluator#network"] == "@network_local"

    # merged over the config as MONAI merges config files; without torchrun every part is a no-op
    parser = ConfigParser(config)
    for k, v in out.items():
        parser[k] = v
    parser.parse()
    parser.get_parsed_content("initialize")
    assert parser.get_parsed_content("device") == torch.device("cpu")
    assert parser.get_parsed_content("train#dataloader").batch_size == 4
    assert parser.get_parsed_content("network") is parser.get_parsed_content("network_def")
    assert len(parser.get_parsed_content("train#trainer#train_handlers")) == 4
    assert isinstance(parser.get_parsed_content("validate#dataloader").sampler, torch.utils.data.SequentialSampler)


def test_overrides_add_the_sampler_and_refuse_a_config_without_the_ids(tmp_path):
    config = _toy(tmp_path)
    del config["train"]["sampler"], config["train"]["dataloader"]["sampler"]
    config["train"]["dataloader"]["shuffle"] = True
    out = multi_gpu_overrides(config)
    assert out["train#sampler"] == {"_target_": "monai_transfer.engines.EpochSampler", "data_source": "@train#dataset",
                                    "seed": "@seed", "shuffle": True}  # fmt: skip
    assert out["train#dataloader#sampler"] == "@train#sampler" and out["train#dataloader#shuffle"] is False
    del config["validate"]["evaluator"]
    with pytest.raises(ValueError, match="validate#evaluator"):
        multi_gpu_overrides(config)
    config = _toy(tmp_path)
    config["validate"]["dataloader"] = "$some_loader()"
    with pytest.raises(ValueError, match="'validate#dataloader' must be a DataLoader component"):
        multi_gpu_overrides(config)


def test_overrides_fit_the_finetune_template():
    from monai_transfer.bundle.templates.finetune import finetune_config
    from monai_transfer.engines.specs import FinetuneSpec

    config = finetune_config(FinetuneSpec(backbone="resnet10", spatial_dims=2, num_classes=2))
    out = multi_gpu_overrides(config)
    assert "train#sampler" not in out  # the template's EpochSampler splits by rank already
    assert out["optimizer"]["params"] == "$@finetune_strategy.apply(@network_local)"
    assert out["train#dataloader#batch_size"]["global_batch_size"] == "@batch_size"
    parser = ConfigParser(config)
    for k, v in out.items():
        parser[k] = v  # every id exists (or has a parent that does)
    assert (
        parser["validate#evaluator#val_handlers"] == "$monai_transfer.engines.main_process_handlers(@validate#handlers)"
    )
