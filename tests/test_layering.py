"""The one-way layering of ``DESIGN.md``: a module never imports from a layer above its own.

Data flows one way: ``data`` -> ``transforms`` -> (``ssl`` | ``finetune``) over ``networks`` + ``weights``, run by
``engines`` (scored with ``metrics``, below it) -> ``evaluation`` -> ``bundle`` / ``study`` / ``label`` -> ``cli``. Every module under
``monai_transfer/`` is parsed with ``ast``; module-level and function-level imports, ``from`` imports, relative
imports and ``importlib.import_module("monai_transfer....")`` / ``__import__`` calls with a literal name all count.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "monai_transfer"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Bottom to top. A layer may import its own package and any layer below; names grouped in one tuple share a level
#: and must not import each other. Why this order:
#: - ``monai_transfer`` (the root ``__init__``: ``__version__``) imports nothing, so everything may import it.
#: - ``utils``: registry, atomic writes, stage names of keys, DDP helpers (rank, gather, barrier), kNN on features.
#: - ``data`` reads and lists images; ``transforms`` never needs a datalist; ``losses`` need neither.
#: - ``weights`` below ``networks``: ``create_backbone(..., pretrained=...)`` / ``create_transfer_net(...,
#:   pretrained=...)`` load weights, while loading weights needs nothing from networks (a backbone's stages are
#:   read through ``param_stages()``, and ``stage_of_key`` lives in ``utils.stages``).
#: - ``metrics``: pure array functions (metrics, calibration, thresholds, statistics, power, domain gap,
#:   transferability, case summaries) build no network, so they sit below ``engines`` as ``monai.metrics`` sits below
#:   MONAI's engines: fine-tuning decides its test section with them and a study compares its cells with them.
#: - ``engines``: the run scaffold (device, schedule, checkpoint, DDP set-up) that SSL and fine-tuning share.
#: - ``ssl`` and ``finetune`` are peers; ``evaluation`` builds networks to score them (``rank`` extracts features,
#:   ``checkpoint_robustness`` runs fine-tuned networks), so it sits above both.
#: - ``bundle`` packages runs; ``study`` and ``label`` use bundles; ``tour`` walks through everything and ``cli``
#:   (which also runs the tour) is the front end.
LAYERS: tuple[tuple[str, ...], ...] = (
    (PACKAGE,),
    ("utils",),
    ("data",),
    ("transforms",),
    ("losses",),
    ("weights",),
    ("networks",),
    ("metrics",),
    ("engines",),
    ("ssl", "finetune"),
    ("evaluation",),
    ("bundle",),
    ("study", "label"),
    ("tour",),
    ("cli",),
)

#: ``(importing file relative to the repository, imported module)`` pairs tolerated for now. Each entry names the
#: issue that removes it; an entry that no longer occurs fails ``test_known_violations_still_occur`` so it is deleted.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

LEVEL: dict[str, int] = {name: i for i, group in enumerate(LAYERS) for name in group}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target_layer: str
    module: str

    def __str__(self) -> str:
        how = "a peer layer" if LEVEL[self.layer] == LEVEL[self.target_layer] else "a higher layer"
        return (
            f"{self.path}:{self.line}: layer {self.layer!r} imports {self.module!r} from {how} "
            f"{self.target_layer!r} (order: {' < '.join('|'.join(g) for g in LAYERS)})"
        )


def module_name(path: Path, root: Path = ROOT) -> str:
    """``monai_transfer/ssl/monitor.py`` -> ``monai_transfer.ssl.monitor`` (a package's ``__init__`` -> the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of a ``monai_transfer`` module name (``None`` for other packages)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else PACKAGE


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _literal_prefix(node: ast.expr) -> str | None:
    """A string literal, or the literal start of an f-string (``f"monai_transfer.ssl.{x}"``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``tree``, at any depth (functions, classes, ``if TYPE_CHECKING``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (
                _resolve_relative(module, is_package, node.level, node.module) if node.level else (node.module or "")
            )
            if target == PACKAGE:
                # ``from monai_transfer import networks`` imports the subpackage; ``__version__`` the root
                found += [(node.lineno, f"{PACKAGE}.{a.name}" if a.name in LEVEL else PACKAGE) for a in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in ("import_module", "__import__"):
                name = _literal_prefix(node.args[0])
                if name and name.split(".")[0] == PACKAGE:
                    found.append((node.lineno, name.rstrip(".")))
    return found


def check_source(source: str, path: str, module: str, is_package: bool = False) -> list[Violation]:
    """The layering violations of one module's source."""
    layer = layer_of(module)
    if layer not in LEVEL:
        raise AssertionError(f"{path}: layer {layer!r} is not in LAYERS; place it in the order in tests/test_layering.py")
    out = []
    for line, target in imported_modules(ast.parse(source, filename=path), module, is_package):
        target_layer = layer_of(target)
        if target_layer is None or target_layer == layer:
            continue
        if target_layer not in LEVEL:
            raise AssertionError(f"{path}:{line}: imports {target!r}, whose layer {target_layer!r} is not in LAYERS")
        if LEVEL[target_layer] >= LEVEL[layer]:
            out.append(Violation(path, line, layer, target_layer, target))
    return out


def package_violations(root: Path = ROOT) -> list[Violation]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        out += check_source(path.read_text(encoding="utf-8"), rel, module_name(path, root), path.name == "__init__.py")
    return out


def _is_known(v: Violation) -> bool:
    return any(v.path == p and (v.module == m or v.module.startswith(m + ".")) for p, m in KNOWN_VIOLATIONS)


# --- the package ----------------------------------------------------------------------------------------------------
def test_no_upward_imports():
    violations = [v for v in package_violations() if not _is_known(v)]
    assert not violations, "upward or peer imports:\n" + "\n".join(map(str, violations))


def test_known_violations_still_occur():
    found = package_violations()
    stale = [(p, m) for p, m in KNOWN_VIOLATIONS if not any(v.path == p and v.module.startswith(m) for v in found)]
    assert not stale, f"fixed, so remove from KNOWN_VIOLATIONS: {stale}"


def test_every_package_has_a_layer():
    layers = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    layers |= {p.stem for p in ROOT.glob("*.py") if p.name != "__init__.py"}
    missing = sorted(layers - set(LEVEL))
    assert not missing, f"place {missing} in LAYERS (tests/test_layering.py)"


# --- the checker itself: it can fail ----------------------------------------------------------------------------------
def _check(source: str, module: str, is_package: bool = False) -> list[Violation]:
    path = module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    return check_source(source, path, module, is_package)


@pytest.mark.parametrize(
    "module,source,target_layer",
    [
        ("monai_transfer.networks.fake", "from monai_transfer.ssl import create_method\n", "ssl"),
        ("monai_transfer.networks.fake", "import monai_transfer.evaluation.rank\n", "evaluation"),
        ("monai_transfer.metrics.fake", "from monai_transfer.engines import RunCheckpoint\n", "engines"),
        ("monai_transfer.utils.fake", "def f():\n    from monai_transfer.data import splits\n", "data"),
        ("monai_transfer.ssl.monitor", "from ..evaluation.rank import extract_features\n", "evaluation"),
        ("monai_transfer.weights.adapters.fake", "from ...networks import base\n", "networks"),
        ("monai_transfer.finetune.fake", "from monai_transfer.ssl.registry import list_methods\n", "ssl"),
        ("monai_transfer.ssl.fake", "from monai_transfer import finetune\n", "finetune"),
        ("monai_transfer.data.fake", "import importlib\nimportlib.import_module('monai_transfer.cli.data')\n", "cli"),
        ("monai_transfer.losses.fake", "from importlib import import_module\nimport_module(f'monai_transfer.ssl.{x}')\n", "ssl"),
        ("monai_transfer", "from monai_transfer.networks import create_backbone\n", "networks"),
    ],
)
def test_checker_catches_upward_import(module, source, target_layer):
    violations = _check(source, module)
    assert [v.target_layer for v in violations] == [target_layer]
    message = str(violations[0])
    assert f"{violations[0].path}:{violations[0].line}:" in message
    assert repr(layer_of(module)) in message and repr(target_layer) in message


@pytest.mark.parametrize(
    "module,source",
    [
        ("monai_transfer.ssl.fake", "from monai_transfer.networks import create_backbone\nimport torch\n"),
        ("monai_transfer.ssl.fake", "from .registry import list_methods\nfrom . import methods\n"),
        ("monai_transfer.networks.fake", "def f():\n    from monai_transfer.weights.load import load_pretrained\n"),
        ("monai_transfer.evaluation.fake", "from monai_transfer import finetune, __version__\n"),
        ("monai_transfer.cli.fake", "from monai_transfer.tour import run_tour\nfrom monai_transfer.study import x\n"),
        ("monai_transfer.utils.fake", "from monai_transfer import __version__\n"),
    ],
)
def test_checker_allows_downward_imports(module, source):
    assert _check(source, module) == []


def test_relative_import_from_a_package_init():
    # in ``monai_transfer/networks/__init__.py``, ``from ..ssl import x`` is ``monai_transfer.ssl``
    assert [v.target_layer for v in _check("from ..ssl import x\n", "monai_transfer.networks", True)] == ["ssl"]
    assert _check("from .registry import x\n", "monai_transfer.networks", True) == []


def test_unknown_layer_is_refused():
    with pytest.raises(AssertionError, match="not in LAYERS"):
        _check("import torch\n", "monai_transfer.newthing.mod")
