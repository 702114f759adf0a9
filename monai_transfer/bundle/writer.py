"""Write a complete MONAI bundle for a starting point (fine-tuning) or a fine-tuned network (inference).

``create_bundle`` writes the model-zoo layout::

    configs/metadata.json        schema meta_schema_20240725, network_data_format, channel_def, changelog
    configs/train.json           fine-tuning (bundle.templates.finetune_config)
    configs/evaluate.json        merged over train.json: models/model.pt on the test section
    configs/multi_gpu_train.json merged over train.json under torchrun (when the DDP template is available)
    configs/inference.json       label maps with the input's geometry, or class probabilities
    configs/logging.conf
    docs/README.md               the starting point, its provenance and licence, the expected input, how to run
    LICENSE
    models/model.pt              the fine-tuned weights (inference bundle), or none yet (starting-point bundle)
    models/pretrained/...        a local starting checkpoint (copied), or
    large_files.yml              the published starting weights: URL and hash as the publisher gives them

The bundle is assembled in a temporary folder beside ``out_dir`` and renamed into place, so a failure leaves nothing
half-written; an existing ``out_dir`` is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from monai_transfer.bundle.templates.finetune import evaluate_config, finetune_config, inference_config
from monai_transfer.engines import specs
from monai_transfer.engines.specs import FinetuneSpec, SpecFieldError
from monai_transfer.engines.templates import render
from monai_transfer.engines.workflow import apply_overrides, parse_overrides
from monai_transfer.finetune.config import strategy_parts
from monai_transfer.transforms.preprocessing import describe_intensity, intensity_of
from monai_transfer.utils.atomic import atomic_write_json, atomic_write_text
from monai_transfer.utils.sizes import per_axis

__all__ = ["create_bundle", "starting_point", "SCHEMA_URL", "LOGGING_CONF", "BundleExistsError"]

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"

#: the package of the bundle layer's templates (``metadata.json``, ``logging.conf``, ``inference.json``...)
_TEMPLATES = "monai_transfer.bundle.templates"

#: ``configs/logging.conf`` of every bundle (MONAI's ``--logging_file``)
LOGGING_CONF = resources.files(_TEMPLATES).joinpath("logging.conf").read_text(encoding="utf-8")


class BundleExistsError(FileExistsError):
    """The output folder exists and ``overwrite`` was not given."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("monai_transfer")
    except PackageNotFoundError:
        return "0.0.0"


def starting_point(pretrained: str | os.PathLike | None, backbone: str) -> dict[str, Any]:
    """What a bundle needs to know of a starting point: its kind, provenance, and how its weights reach the bundle.

    ``pretrained`` is anything ``resolve_pretrained`` takes: ``None``, a source name, a checkpoint file, or a bundle or
    run folder the package writes (its weights file is copied into the bundle: a fine-tuned network's
    ``models/model.pt``, a ``pretrain`` folder's ``encoder.pt``, a starting-point bundle's starting file; a shipped
    bundle of a published source gives that source).

    Returns:
        ``{"kind": "random" | "source" | "file", "provenance": dict, "file": Path | None, "large_file": dict | None,
        "name": str, "origin": str}`` (and ``"source"``: the published source, or whose layout a file has; a
        source's ``"path"`` in the bundle, and ``"by_hand"``: ``{"path", "from"}`` when its file is not a plain
        download and the user places it).
    """
    from monai_transfer.weights.sources import get_source, resolve_source
    from monai_transfer.weights.starting_point import resolve_pretrained

    start = resolve_pretrained(pretrained, backbone)
    if start.kind == "random":
        return {
            "kind": "random",
            "provenance": {},
            "file": None,
            "large_file": None,
            "name": start.name,
            "origin": start.origin,
        }
    if start.kind == "source":
        name = str(start.source)
        source, wfile = resolve_source(name, backbone)
        prov = source.provenance_for(backbone)
        filename = wfile.filename or os.path.basename(wfile.url.split("?")[0])
        sha = wfile.sha256 or ""
        entry = {
            "path": f"models/pretrained/{filename}",
            "url": wfile.url,
            "hash_val": sha if len(sha) == 64 else "",
            "hash_type": "sha256" if len(sha) == 64 else "",
        }
        # MONAI's download_large_files fetches a URL as it is: a request form's page (or a hf:// / monai-zoo: name)
        # would be saved as the weights; such a file is placed by hand, where the README says
        by_hand = bool(wfile.request_url) or not wfile.url.startswith(("https://", "http://"))
        return {
            "kind": "source",
            "provenance": asdict(prov),
            "file": None,
            "path": entry["path"],
            "large_file": None if by_hand else entry,
            "by_hand": {"path": entry["path"], "from": wfile.request_url or wfile.url} if by_hand else None,
            "name": name,
            "source": get_source(name).name,
            "notes": source.notes,
            "origin": start.origin,
        }
    out = {
        "kind": "file",
        "provenance": dict(start.provenance),
        "file": start.weights,
        "large_file": None,
        "name": start.name,
        "origin": start.origin,
    }
    if start.source is not None:  # a shipped bundle's downloaded file: read with its source's adapter
        out["source"] = get_source(start.source).name
    return out


def _network_facts(spec: FinetuneSpec, pretrained_source: str | None) -> dict[str, Any]:
    """The network's largest stride, its backbone options (a source's own first), a ViT's input size, its size."""
    from monai_transfer.networks import create_transfer_net
    from monai_transfer.weights.sources import source_backbone_kwargs

    kwargs = {**source_backbone_kwargs(pretrained_source, spec.backbone), **dict(spec.backbone_kwargs)}
    net = create_transfer_net(spec.backbone, task=spec.task, spatial_dims=spec.spatial_dims,
                              in_channels=spec.in_channels, num_classes=spec.num_classes, backbone_kwargs=kwargs,
                              seed=0)  # fmt: skip
    stride = int(max(s.stride for s in net.backbone.feature_info))
    img = getattr(net.backbone, "img_size", None)
    return {
        "divisible_by": stride,
        "backbone_kwargs": kwargs,
        "img_size": img,
        "n_params": sum(p.numel() for p in net.parameters()),
    }


def metadata_head(version: str, changelog: str) -> dict[str, Any]:
    """The fields every bundle's metadata starts with: schema, version and its changelog entry, package versions."""
    import monai
    import numpy as np
    import torch

    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: changelog},
        "monai_version": monai.__version__.split("+")[0],
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"monai_transfer": _version()},
        "supported_apps": {},
    }


def _metadata(
    net: Mapping[str, Any],
    shape: list,
    name: str,
    description: str,
    version: str,
    changelog: str,
    start: Mapping[str, Any],
    modality: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """``configs/metadata.json`` (``templates/metadata.json`` filled) of the network ``net`` (``create_bundle``'s
    ``task``, ``spatial_dims``, ``in_channels``, ``labels``, ``intensity``)."""
    task, spatial_dims, in_channels, labels = net["task"], net["spatial_dims"], net["in_channels"], net["labels"]
    intensity = net["intensity"]
    prov = start.get("provenance") or {}
    seg = task == "segmentation"
    refs = [c for c in [prov.get("citation")] if c] or ["MONAI Consortium, MONAI: Medical Open Network for AI"]
    image = "network_data_format#inputs#image"
    meta = render(
        _TEMPLATES,
        "metadata.json",
        {
            "name": name,
            "task": f"{spatial_dims}D {task}",
            "description": description,
            "data_source": str(prov.get("source_data") or "the user's datalist"),
            "image_classes": f"{in_channels} channel {modality or 'medical'} image; intensity: "
            f"{describe_intensity(intensity)}",
            "label_classes": ", ".join(f"{i} {lab}" for i, lab in enumerate(labels)),
            "pred_classes": ", ".join(f"{i} {lab}" for i, lab in enumerate(labels)),
            "eval_metrics": dict(extra.get("eval_metrics") or {}),
            "references": refs,
            f"{image}#modality": modality or "MR",
            f"{image}#num_channels": int(in_channels),
            f"{image}#spatial_shape": shape,
            f"{image}#channel_def": {str(i): f"image channel {i}" for i in range(int(in_channels))},
            "network_data_format#outputs#pred#type": "image" if seg else "probabilities",
            "network_data_format#outputs#pred#format": "segmentation" if seg else "classes",
            "network_data_format#outputs#pred#num_channels": len(labels),
            "network_data_format#outputs#pred#spatial_shape": shape if seg else [1, len(labels)],
            "network_data_format#outputs#pred#channel_def": {str(i): lab for i, lab in enumerate(labels)},
            "monai_transfer#starting_point": start.get("name"),
            "monai_transfer#kind": start.get("kind"),
            "monai_transfer#provenance": _plain(prov),
        },
    )
    meta["monai_transfer"].update({k: _plain(v) for k, v in extra.items()})
    return {**metadata_head(version, changelog), **meta}


def _intensity_origin(start: Mapping[str, Any], intensity: Mapping[str, Any] | None) -> str:
    """Where a bundle's intensity mapping comes from, in words: the starting point's own, or a departure from it."""
    recorded = intensity_of((start.get("provenance") or {}).get("preprocessing"))
    if recorded is None:
        return "the default: the starting point records none" if intensity is None else "chosen for this bundle"
    if intensity is not None and dict(intensity) != dict(recorded):
        return f"departing from the starting point's own {describe_intensity(recorded)}"
    return "the starting point's own"


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _readme(
    net: Mapping[str, Any],
    name: str,
    description: str,
    shape: list,
    start: Mapping[str, Any],
    has_model: bool,
    load_report: str | None,
) -> str:
    """``docs/README.md``: the starting point, the expected input, how to run the bundle."""
    task, spatial_dims, in_channels, labels = net["task"], net["spatial_dims"], net["in_channels"], net["labels"]
    intensity = net["intensity"]
    prov = start.get("provenance") or {}
    lines = [f"# {name}", "", description, "", "## Starting point", ""]
    if start["kind"] == "random":
        lines.append("Random initialisation (no pretrained weights).")
    else:
        lines.append(f"`{start['name']}`.")
        for key in ("method", "source_data", "modality", "url", "sha256", "licence", "citation", "notes"):
            if prov.get(key):
                lines.append(f"- {key.replace('_', ' ')}: {prov[key]}")
    if start.get("large_file"):
        lines += [
            "",
            "The starting weights are not stored in the bundle: fetch them (URL and hash in " "`large_files.yml`) with",
            "",
            "```bash",
            "python -m monai.bundle download_large_files --bundle_path .",
            "```",
        ]
    if start.get("by_hand"):
        lines += [
            "",
            f"The publisher hands out the starting weights only from {start['by_hand']['from']}: get the file there "
            f"and put it at `{start['by_hand']['path']}` before training (`monai-transfer weights sources` says more).",
        ]
    if start.get("notes"):
        lines += ["", f"Note on the published file: {start['notes']}"]
    if load_report:
        lines += ["", "What loaded into the backbone:", "", "```", load_report.rstrip(), "```"]
    lines += [
        "",
        "## Expected input",
        "",
        f"{spatial_dims}D images with {in_channels} channel(s), spatial shape {shape}; intensity mapping "
        f"`{describe_intensity(intensity)}` ({_intensity_origin(start, intensity)}, applied by the configs).",
        f"Output: {'a label map' if task == 'segmentation' else 'class probabilities'} over {list(labels)}.",
        "",
        "## Run",
        "",
        "Data: a datalist JSON (MSD layout, sections `training`, `validation`, `test`) at `data/datalist.json`, or",
        "give its place with `--dataset_dir DIR --datalist FILE`.",
        "",
        "```bash",
        "# fine-tune (writes models/model.pt, the best validation checkpoint)",
        "python -m monai.bundle run --config_file configs/train.json --bundle_root .",
        "# evaluate models/model.pt on the test section",
        "python -m monai.bundle run --config_file \"['configs/train.json','configs/evaluate.json']\" --bundle_root .",
        "# fine-tune on 2 GPUs",
        "torchrun --nproc_per_node 2 -m monai.bundle run "
        "--config_file \"['configs/train.json','configs/multi_gpu_train.json']\" --bundle_root .",
        "# predict every image in DIR (eval/)",
        "python -m monai.bundle run --config_file configs/inference.json --bundle_root . --dataset_dir DIR",
        "```",
        "",
        "Any value can be changed on the command line, e.g. `--lr 1e-4 --label_fraction 0.1` or "
        "`--train#trainer#max_epochs 5`.",
        "",
        "In Python:",
        "",
        "```python",
        "from monai_transfer.bundle import load_bundle_network",
        "net = load_bundle_network('.')" + ("  # models/model.pt loaded" if has_model else "  # starting weights"),
        "```",
        "",
        "Written by `monai_transfer` (`monai-transfer bundle create`); check it with `monai-transfer bundle check .`.",
    ]
    return "\n".join(lines) + "\n"


def _license(start: Mapping[str, Any]) -> str:
    licence = (start.get("provenance") or {}).get("licence") or ""
    weights = f"The starting weights: {licence}." if licence else "The starting weights: see docs/README.md."
    return (
        "Configs and documentation of this bundle: Apache License, Version 2.0\n"
        "(https://www.apache.org/licenses/LICENSE-2.0).\n\n"
        f"{weights}\nWeights fine-tuned from them inherit those terms and the terms of the data they were trained on.\n"
    )


#: what ``create_bundle(out_dir, ...)`` reads from positional arguments after ``out_dir``, in order
POSITIONAL = ("backbone", "task", "spatial_dims", "num_classes")


def create_bundle(
    out_dir: str | os.PathLike,
    *args: Any,
    labels: Sequence[str] | None = None,
    weights: str | os.PathLike | None = None,
    name: str | None = None,
    description: str | None = None,
    modality: str | None = None,
    version: str = "0.1.0",
    changelog: str = "initial version",
    extra_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> Path:
    """Write a bundle (layout in the module docstring) and return its folder.

    The network and its fine-tuning are the fields of :class:`~monai_transfer.engines.specs.FinetuneSpec`, checked
    as a run checks them and rendered by the same ``finetune_config``: give a spec, or settings by name (``backbone``,
    ``task``, ``spatial_dims``, ``num_classes`` also by position). ``pretrained`` is the starting point: a weight
    source name (its file goes to ``large_files.yml``), a checkpoint or bundle (its weights copied into
    ``models/pretrained/``), or ``None`` (random initialisation); ``intensity`` defaults to the starting point's
    recorded preprocessing (z-score when none), a classifier's ``spatial_size`` to a ViT's ``img_size``; ``overrides``
    (``{"batch_size": 2}``, ``bundle create --set``) are set in ``train.json`` last; ``resume`` defaults to
    ``"overwrite"`` (MONAI Label retrains in the bundle's folder).

    Args:
        out_dir: the bundle folder (refused when it exists, unless ``overwrite``).
        labels: class names (background first for segmentation); default ``class_0``...
        weights: fine-tuned weights (a ``state_dict`` file) to ship as ``models/model.pt``; hard-linked when the
            file system allows (no second copy on disk), copied otherwise.
        name, description, modality: for the metadata and README.
        version, changelog: the bundle's version and its changelog entry.
        extra_metadata: kept under ``monai_transfer`` in the metadata (``eval_metrics`` goes to the top level).
        overwrite: replace an existing ``out_dir``.

    Raises:
        SpecFieldError: a bad or missing setting, named, before anything is written.
    """
    settings.setdefault("resume", "overwrite")
    spec = specs.spec_class("finetune").from_arguments(args, settings, POSITIONAL, "create_bundle")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleExistsError(f"{out} exists; choose another folder or pass overwrite=True (--overwrite)")
    spec, labels = _settle_classes(spec, labels)
    from monai_transfer.finetune import create_strategy

    # an unknown strategy or option fails here, not at the bundle's first run
    strategy, strategy_kwargs = strategy_parts(spec.strategy, spec.strategy_kwargs)
    create_strategy(strategy, **{"lr": spec.lr, "weight_decay": spec.weight_decay, "head_lr_mult": spec.head_lr_mult,
                                 **strategy_kwargs})  # fmt: skip
    start = starting_point(spec.pretrained, spec.backbone)
    facts = _network_facts(spec, start.get("source"))
    intensity = spec.intensity
    if intensity is None:
        intensity = intensity_of((start["provenance"] or {}).get("preprocessing"))
    spatial_size = spec.spatial_size
    if spec.task == "classification" and spatial_size is None and facts["img_size"] is not None:
        spatial_size = facts["img_size"]
    spec = spec.replace(intensity=intensity, spatial_size=spatial_size, backbone_kwargs=facts["backbone_kwargs"],
                        pretrained=_pretrained_ref(start), strategy=strategy, strategy_kwargs=strategy_kwargs,
                        out_dir="", datalist="")  # fmt: skip
    network = {"backbone": spec.backbone, "task": spec.task, "spatial_dims": spec.spatial_dims,
               "in_channels": spec.in_channels, "labels": labels, "intensity": intensity}  # fmt: skip
    configs = _configs(spec, labels, facts["divisible_by"], start)
    shape = _input_shape(spec.task, spec.spatial_dims, spatial_size, facts["divisible_by"])
    title = name or f"{spec.backbone} {spec.spatial_dims}D {spec.task} from {start['name']}"
    desc = description or _description(network, facts["n_params"], start)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for folder in ("configs", "docs", "models"):
            (tmp / folder).mkdir()
        for fname, cfg in configs.items():
            atomic_write_json(tmp / "configs" / fname, cfg, indent=4)
        atomic_write_text(tmp / "configs" / "logging.conf", LOGGING_CONF)
        load_report = _add_weights(tmp, start, weights, configs["train.json"])
        if load_report is None and isinstance((extra_metadata or {}).get("load_report"), str):
            load_report = extra_metadata["load_report"]  # a run's own report (a published start is not fetched here)
        extra = {
            **dict(extra_metadata or {}),
            "load_report": load_report,
            "intensity": intensity,
            "intensity_origin": _intensity_origin(start, intensity),
        }
        if start.get("by_hand"):  # bundle check builds the network without it until it is placed
            extra["starting_weights_by_hand"] = start["by_hand"]
        modality = modality or str((start["provenance"] or {}).get("modality") or "")
        meta = _metadata(network, shape, title, desc, version, changelog, start, modality, extra)
        atomic_write_json(tmp / "configs" / "metadata.json", meta, indent=4)
        readme = _readme(network, title, desc, shape, start, weights is not None, load_report)
        atomic_write_text(tmp / "docs" / "README.md", readme)
        atomic_write_text(tmp / "LICENSE", _license(start))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _settle_classes(spec: FinetuneSpec, labels: Sequence[str] | None) -> tuple[FinetuneSpec, list[str]]:
    """The spec with its class count and dimensionality given, and the class names (``class_0``... by default)."""
    if spec.spatial_dims is None:
        raise SpecFieldError("spatial_dims: give 2 or 3")
    if spec.num_classes is None and not labels:
        raise SpecFieldError("num_classes: give it, or the class names (labels)")
    names = list(labels) if labels else [f"class_{i}" for i in range(int(spec.num_classes))]  # type: ignore[arg-type]
    if spec.num_classes is not None and len(names) != spec.num_classes:
        raise ValueError(f"{len(names)} labels {names} for num_classes={spec.num_classes}")
    return spec.replace(num_classes=len(names)), names


def _pretrained_ref(start: Mapping[str, Any]) -> str | None:
    """The starting weights as ``train.json`` reads them: inside the bundle (``$@bundle_root + '/...'``)."""
    if start["kind"] == "source":
        return f"$@bundle_root + '/{start['path']}'"
    if start["kind"] == "file":
        return f"$@bundle_root + '/models/pretrained/{start['file'].name}'"
    return None


def _description(net: Mapping[str, Any], n_params: int, start: Mapping[str, Any]) -> str:
    """The metadata's and README's default description of the bundle's network."""
    return (
        f"{net['backbone']} ({n_params / 1e6:.1f} M parameters) for {net['spatial_dims']}D {net['task']} of "
        f"{', '.join(net['labels'])}, starting from {start['name']}."
    )


def _input_shape(task: str, spatial_dims: int, spatial_size: Any, d: int) -> list:
    """The metadata's input shape: a classifier's fixed size, or a multiple of the network's stride ``d``."""
    if task == "classification" and spatial_size is not None:
        return per_axis(spatial_size, spatial_dims, "spatial_size")
    if task == "segmentation":  # the configs pad to a multiple of d, at least 2 d (the deepest map keeps 2 voxels)
        return [f"{d}*n+{d}"] * spatial_dims
    return [f"{d}*n"] * spatial_dims


def _configs(spec: FinetuneSpec, labels: list[str], divisible_by: int, start: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle's configs by file name: ``train.json`` starting from ``start``'s weights in the bundle,
    ``evaluate.json``, ``inference.json`` and (when the DDP template is available) ``multi_gpu_train.json``."""
    train = finetune_config(spec, labels, divisible_by)
    if start.get("source"):
        train["network_def"]["pretrained_source"] = start["source"]
    train = apply_overrides(train, parse_overrides(spec.overrides))  # an unknown id is named with the close ones
    infer = inference_config(spec, labels, divisible_by)
    configs = {"train.json": train, "evaluate.json": evaluate_config(), "inference.json": infer}
    multi = _multi_gpu(train)
    if multi is not None:
        configs["multi_gpu_train.json"] = multi
    return configs


def _add_weights(
    root: Path, start: Mapping[str, Any], weights: str | os.PathLike | None, train: Mapping[str, Any]
) -> str | None:
    """Put the starting weights (a copied file, or ``large_files.yml``) and the fine-tuned ``weights`` (with the run's
    ``decision.json``) into the bundle at ``root``; return the starting file's load report, if one was copied."""
    load_report = None
    if start["kind"] == "file":
        (root / "models" / "pretrained").mkdir()
        _link_or_copy(start["file"], root / "models" / "pretrained" / start["file"].name)  # no second copy on disk
        load_report = _load_report(root, train, start["file"].name)
    if start["large_file"] is not None:
        import yaml

        text = yaml.safe_dump({"large_files": [start["large_file"]]}, sort_keys=False, default_style=None)
        atomic_write_text(root / "large_files.yml", text)
    if weights is not None:
        _link_or_copy(Path(weights), root / "models" / "model.pt")
        decision = Path(weights).with_name("decision.json")  # the run's threshold / temperature, if it chose one
        if decision.is_file():
            shutil.copyfile(decision, root / "models" / "decision.json")
    return load_report


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and put back if the rename fails."""
    if not out.exists():
        os.replace(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(aside / out.name, out)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _multi_gpu(train: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        from monai_transfer.bundle.templates.multi_gpu import multi_gpu_overrides
    except ImportError:  # the DDP template is optional for a bundle
        return None
    return multi_gpu_overrides(dict(train))


def _link_or_copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(f"weights file not found: {src}")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _load_report(root: Path, train: Mapping[str, Any], filename: str) -> str | None:
    """The load report of the bundle's starting weights (``models/pretrained/<filename>``) into its network (strict),
    as text."""
    from monai_transfer.networks import create_transfer_net

    nd = dict(train["network_def"])
    pretrained = str(root / "models" / "pretrained" / filename)
    net = create_transfer_net(
        backbone=nd["backbone"],
        task=train["task"],
        spatial_dims=train["spatial_dims"],
        in_channels=train["in_channels"],
        num_classes=train["num_classes"],
        pretrained=pretrained,
        backbone_kwargs=nd.get("backbone_kwargs"),
        pretrained_source=nd.get("pretrained_source"),
    )
    report = getattr(net.backbone, "load_report", None)
    # the bundle is assembled in a temporary folder: the report names the file relative to the bundle
    return None if report is None else str(report).replace(str(root), ".")
