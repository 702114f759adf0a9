"""The generic registry behind the backbone, SSL method, weight source, adapter and strategy registries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from monai_transfer.utils.registry import Registry


@dataclass(frozen=True)
class Entry:
    name: str
    value: int = 0


def test_register_by_call_returns_the_object_and_uses_its_name():
    reg = Registry("thing")
    e = Entry("alpha", 1)
    assert reg.register(e) is e
    assert reg.get("alpha") is e and reg["alpha"] is e
    assert "alpha" in reg and "beta" not in reg and 3 not in reg
    assert reg.register(Entry("x"), name="other").name == "x"
    assert reg.names() == ["alpha", "other"]


def test_register_as_decorator_bare_named_and_keyword():
    reg = Registry("function")

    @reg.register
    def plain():
        return 1

    @reg.register("given")
    def f():
        return 2

    @reg.register(name="kw")
    def g():
        return 3

    assert reg.names() == ["plain", "given", "kw"]
    assert reg.get("given")() == 2 and reg.get("kw") is g


def test_register_needs_a_name():
    with pytest.raises(TypeError, match="pass name="):
        Registry("number").register(3)


def test_duplicate_name_refused_unless_overwrite():
    reg = Registry("backbone")
    reg.register(Entry("a", 1))
    with pytest.raises(KeyError, match="backbone 'a' is already registered; pass overwrite=True"):
        reg.register(Entry("a", 2))
    reg.register(Entry("a", 2), overwrite=True)
    assert reg.get("a").value == 2


def test_list_is_sorted_and_filtered_names_keep_registration_order():
    reg = Registry("backbone")
    for n in ("resnet50", "vit_b16", "resnet18", "densenet121"):
        reg.register(Entry(n))
    assert reg.names() == ["resnet50", "vit_b16", "resnet18", "densenet121"]
    assert reg.list() == ["densenet121", "resnet18", "resnet50", "vit_b16"]
    assert reg.list("resnet*") == ["resnet18", "resnet50"]
    assert list(reg) == reg.names() and len(reg) == 4
    assert [k for k, _ in reg.items()] == reg.names()


@pytest.mark.parametrize(
    "query,close",
    [("resnet19", {"resnet18", "resnet50"}), ("vit_b61", {"vit_b16"}), ("resnet", {"resnet18", "resnet50"})],
)
def test_unknown_name_names_close_matches_and_the_known_ones(query, close):
    reg = Registry("backbone")
    for n in ("resnet18", "resnet50", "vit_b16"):
        reg.register(Entry(n))
    with pytest.raises(KeyError) as info:
        reg.get(query)
    message = info.value.args[0]
    assert message.startswith(f"unknown backbone {query!r}; did you mean ")
    hint = message.split("did you mean ", 1)[1].split("?", 1)[0]
    assert {n for n in ("resnet18", "resnet50", "vit_b16") if repr(n) in hint} == close
    assert message.endswith("known: ['resnet18', 'resnet50', 'vit_b16']")


def test_unknown_name_without_close_match_and_custom_error_and_note():
    reg = Registry("fine-tuning strategy", error=ValueError, note=" (and 'freeze-<k>')")
    reg.register(Entry("full"))
    with pytest.raises(ValueError, match=r"^unknown fine-tuning strategy 'zzz'; known: \['full'\] \(and 'freeze-<k>'\)$"):
        reg.get("zzz")
    # the mapping protocol keeps KeyError whatever ``error`` is
    with pytest.raises(KeyError, match="unknown fine-tuning strategy 'zzz'"):
        reg["zzz"]
    assert reg.get("zzz", None) is None


def test_normalize_applies_to_lookup_membership_and_registration():
    reg = Registry("SSL method", normalize=lambda s: s.lower().replace("-", "_"))
    reg.register(Entry("Moco-V2"))
    assert reg.names() == ["moco_v2"]
    assert "MOCO-v2" in reg and reg.get("moco-v2").name == "Moco-V2"
    assert reg.key("Barlow-Twins") == "barlow_twins"


def test_loader_runs_once_before_the_first_lookup_and_retries_after_a_failure():
    calls = []
    reg: Registry[Entry] = Registry("thing")

    def loader():
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("broken")
        reg.register(Entry("builtin"))

    reg = Registry("thing", loader=loader)
    reg.register(Entry("user"))  # registering does not load
    assert calls == []
    with pytest.raises(ImportError):
        reg.names()
    assert reg.list() == ["builtin", "user"]
    assert "builtin" in reg and len(calls) == 2
    reg.get("builtin")
    assert len(calls) == 2


def test_mutable_mapping_protocol_works_with_monkeypatch(monkeypatch):
    reg = Registry("weight source")
    reg.register(Entry("a"))
    with monkeypatch.context() as m:
        m.setitem(reg, "b", Entry("b"))
        assert reg.names() == ["a", "b"]
    assert reg.names() == ["a"]
    assert reg.unregister("a").name == "a" and len(reg) == 0
    with pytest.raises(KeyError, match="unknown weight source 'a'"):
        reg.unregister("a")


def test_the_package_registries_share_it():
    from monai_transfer.finetune.strategies import STRATEGIES
    from monai_transfer.networks.registry import _REGISTRY as BACKBONES
    from monai_transfer.ssl.registry import _REGISTRY as METHODS
    from monai_transfer.weights.adapters.base import _ADAPTERS
    from monai_transfer.weights.sources import _SOURCES

    for reg in (STRATEGIES, BACKBONES, METHODS, _ADAPTERS, _SOURCES):
        assert isinstance(reg, Registry)
        assert len(reg) > 0
