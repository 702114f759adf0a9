"""The one-way layering of ``DESIGN.md``: a module never depends on a layer above its own, and no modules import
each other in a circle.

Data flows one way: ``data`` -> ``transforms`` -> (``ssl`` | ``finetune``) over ``networks`` + ``weights``, run by
``engines`` (scored with ``metrics``, which sits below it) -> ``evaluation`` -> ``bundle`` / ``study`` / ``label`` ->
``cli``. Every module under ``monai_transfer/`` is parsed with ``ast``; module-level and function-level imports (a late
import inside a function is still a dependency), ``from`` imports, relative imports and
``importlib.import_module("monai_transfer....")`` / ``__import__`` calls with a literal name all count. So do the
names a config reaches through strings: every ``_target_`` value and every ``$``-expression naming
``monai_transfer.x.y`` in the package's Python and JSON/YAML templates and in the shipped bundles' configs (which sit
at the ``bundle`` layer), and a string in code that is nothing but a dotted ``monai_transfer`` path.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

PACKAGE = "monai_transfer"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
BUNDLES = ROOT.parent / "bundles"

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

#: Shipped bundle configs whose ``_target_``/``$`` names are stale, each with the issue that regenerates them
#: (``scripts/make_bundles.py``); one whose names all resolve again fails ``test_known_stale_configs_still_stale``.
KNOWN_STALE_CONFIGS: dict[str, str] = {}

#: ``(file, name)`` pairs where a string names a higher layer as documentation, not as something code or a config
#: resolves: allowed, and checked to still occur so the list stays true.
DOCUMENTED_NAMES: frozenset[tuple[str, str]] = frozenset(
    {
        # the weights adapter reads the key layout of a fine-tuned TransferNet (backbone.* kept, head.* dropped) from a
        # checkpoint file; ``reference`` tells ``monai-transfer weights`` users which network wrote that layout
        ("monai_transfer/weights/adapters/transfer_net.py", "monai_transfer.networks.TransferNet"),
    }
)

#: Import circles (strongly connected groups of modules, function-level imports included) tolerated for now, each with
#: the issue that removes it; one that no longer occurs fails ``test_known_circles_still_occur`` so it is deleted.
KNOWN_CIRCLES: dict[frozenset[str], str] = {}

LEVEL: dict[str, int] = {name: i for i, group in enumerate(LAYERS) for name in group}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target_layer: str
    module: str
    #: ``"import"``, ``"import inside a function"`` or ``"config reference"`` (a ``_target_``, ``$``-expression or
    #: dotted-path string)
    kind: str = "import"

    def __str__(self) -> str:
        how = "a peer layer" if LEVEL[self.layer] == LEVEL[self.target_layer] else "a higher layer"
        verb = "names" if self.kind == "config reference" else "imports"
        return (
            f"{self.path}:{self.line}: layer {self.layer!r} {verb} {self.module!r} from {how} "
            f"{self.target_layer!r} ({self.kind}; order: {' < '.join('|'.join(g) for g in LAYERS)})"
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


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node of ``tree`` with whether it sits inside a function (or lambda) body."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        yield node, inside
        inner = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inner) for child in reversed(list(ast.iter_child_nodes(node))))


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, bool]]:
    """``(line, module, inside_a_function)`` for every import in ``tree``, at any depth (functions, classes,
    ``if TYPE_CHECKING``)."""
    found: list[tuple[int, str, bool]] = []
    for node, inside in _walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (
                _resolve_relative(module, is_package, node.level, node.module) if node.level else (node.module or "")
            )
            # ``from monai_transfer.x import y`` imports the module ``monai_transfer.x.y`` when there is one (``from
            # monai_transfer import networks``: the subpackage), else a name of ``monai_transfer.x``
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((node.lineno, sub if sub in _MODULES else target, inside))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in ("import_module", "__import__"):
                name = _literal_prefix(node.args[0])
                if name and name.split(".")[0] == PACKAGE:
                    found.append((node.lineno, name.rstrip("."), inside))
    return list(dict.fromkeys(found))


#: ``_target_`` values and ``$``-expressions name ``monai_transfer.x.y[.attr]`` (``module:attr`` in method tables)
_DOTTED = re.compile(rf"\b{PACKAGE}(?:[.:][A-Za-z_]\w*)+")


def _strings_named(value: str, whole: bool) -> list[str]:
    """The ``monai_transfer`` names in a ``$``-expression (every one), or in a string that is only a dotted path."""
    if whole:
        m = _DOTTED.fullmatch(value.strip())
        return [m.group(0).replace(":", ".")] if m else []
    return [m.replace(":", ".") for m in _DOTTED.findall(value)]


def config_references(tree: ast.AST, dotted_strings: bool = True) -> list[tuple[int, str]]:
    """``(line, name)`` for every ``monai_transfer`` name a config reaches through a string in Python code: a
    ``_target_`` value (a literal, or an f-string's literal start), a ``$``-expression (also inside f-strings), and a
    string that is only a dotted ``monai_transfer`` path (``"monai_transfer.finetune.trainer.AtomicBestCheckpoint"``).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "_target_" and value is not None:
                    start = _literal_prefix(value)
                    if start:
                        found += [(value.lineno, n) for n in _strings_named(start, whole=False)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.lstrip().startswith("$") or "$" + PACKAGE in text:
                found += [(node.lineno, n) for n in _strings_named(text, whole=False)]
            elif dotted_strings:
                found += [(node.lineno, n) for n in _strings_named(text, whole=True)]
    return list(dict.fromkeys(found))


def data_references(obj: Any) -> list[str]:
    """The ``monai_transfer`` names in a parsed JSON/YAML config: ``_target_`` values and ``$``-expressions (``imports``
    included), at any depth."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "_target_" and isinstance(value, str):
                found += _strings_named(value, whole=False)
            else:
                found += data_references(value)
    elif isinstance(obj, list):
        for value in obj:
            found += data_references(value)
    elif isinstance(obj, str) and obj.lstrip().startswith("$"):
        found += _strings_named(obj, whole=False)
    return found


@functools.cache
def _top_level_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def resolve_name(name: str, modules: dict[str, Path]) -> tuple[str | None, str | None]:
    """``(module, problem)``: the longest module prefix of a dotted ``monai_transfer`` name, and what is wrong when it
    names nothing (no such module, or the module defines no such attribute)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        mod = ".".join(parts[:i])
        if mod in modules:
            rest = parts[i:]
            if rest and f"{mod}.{rest[0]}" not in modules and rest[0] not in _top_level_names(modules[mod]):
                return mod, f"{mod} defines no {rest[0]!r}"
            return mod, None
    return None, f"no module {name!r}"


def _check_targets(path: str, layer: str, targets: list[tuple[int, str, str]]) -> list[Violation]:
    """The ``(line, name, kind)`` of one file at ``layer`` that name a layer above it or a peer."""
    out = []
    for line, target, kind in targets:
        target_layer = layer_of(target)
        if target_layer is None or target_layer == layer:
            continue
        if target_layer not in LEVEL:
            raise AssertionError(f"{path}:{line}: imports {target!r}, whose layer {target_layer!r} is not in LAYERS")
        if LEVEL[target_layer] >= LEVEL[layer]:
            out.append(Violation(path, line, layer, target_layer, target, kind))
    return out


def check_source(source: str, path: str, module: str, is_package: bool = False) -> list[Violation]:
    """The layering violations of one module's source: its imports (at any depth) and the names its config strings
    reach."""
    layer = layer_of(module)
    if layer not in LEVEL:
        raise AssertionError(
            f"{path}: layer {layer!r} is not in LAYERS; place it in the order in tests/test_layering.py"
        )
    tree = ast.parse(source, filename=path)
    targets = [
        (line, target, "import inside a function" if inside else "import")
        for line, target, inside in imported_modules(tree, module, is_package)
    ]
    imported = {(line, target) for line, target, _ in targets}  # ``import_module("monai_transfer.x")`` counts once
    targets += [
        (line, name, "config reference") for line, name in config_references(tree) if (line, name) not in imported
    ]
    return _check_targets(path, layer, targets)


def check_config(obj: Any, path: str, layer: str) -> list[Violation]:
    """The layering violations of one parsed JSON/YAML config that sits at ``layer`` (line numbers are not kept: 0)."""
    return _check_targets(path, layer, [(0, name, "config reference") for name in data_references(obj)])


def _package_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


_MODULES: dict[str, Path] = _package_modules()


def config_files(root: Path = ROOT, bundles: Path = BUNDLES) -> list[tuple[Path, str]]:
    """``(file, layer)`` for every JSON/YAML config: the package's templates (at their folder's layer) and the shipped
    bundles' ``configs/`` (at the ``bundle`` layer). JSON schemas are not configs."""
    out = []
    for p in sorted([*root.rglob("*.json"), *root.rglob("*.yaml"), *root.rglob("*.yml")]):
        if "schema" not in p.relative_to(root).parts:
            out.append((p, layer_of(module_name(p.with_suffix(".py"), root)) or PACKAGE))
    for p in sorted([*bundles.glob("*/configs/*.json"), *bundles.glob("*/configs/*.yaml")]):
        out.append((p, "bundle"))
    return out


def _load_config(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@functools.cache
def package_violations(root: Path = ROOT) -> list[Violation]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        out += check_source(path.read_text(encoding="utf-8"), rel, module_name(path, root), path.name == "__init__.py")
    for path, layer in config_files(root):
        out += check_config(_load_config(path), path.relative_to(root.parent).as_posix(), layer)
    return out


@functools.cache
def _package_graph() -> dict[str, set[str]]:
    return import_graph()


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the package modules it imports (module-level and function-level; a name resolves to the most specific
    module it starts with, so ``from monai_transfer.data import load_datalist`` is an edge to the ``data`` package)."""
    modules = _MODULES if modules is None else modules
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set()
        for _, target, _ in imported_modules(tree, mod, path.name == "__init__.py"):
            resolved, _ = resolve_name(target, modules) if target.split(".")[0] == PACKAGE else (None, None)
            if resolved and resolved != mod:
                edges.add(resolved)
        graph[mod] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The import circles of ``graph``: its strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe_circle(group: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in group for b in graph[a] if b in group)
    return "{" + ", ".join(sorted(group)) + "}: " + "; ".join(edges)


def _is_known(v: Violation) -> bool:
    if v.kind == "config reference" and (v.path, v.module) in DOCUMENTED_NAMES:
        return True
    return any(v.path == p and (v.module == m or v.module.startswith(m + ".")) for p, m in KNOWN_VIOLATIONS)


# --- the package ----------------------------------------------------------------------------------------------------
def test_no_upward_imports():
    violations = [v for v in package_violations() if not _is_known(v)]
    assert not violations, "upward or peer imports:\n" + "\n".join(map(str, violations))


def test_known_violations_still_occur():
    found = package_violations()
    stale = [(p, m) for p, m in KNOWN_VIOLATIONS if not any(v.path == p and v.module.startswith(m) for v in found)]
    assert not stale, f"fixed, so remove from KNOWN_VIOLATIONS: {stale}"


def test_documented_names_still_occur():
    found = {(v.path, v.module) for v in package_violations() if v.kind == "config reference"}
    stale = sorted(DOCUMENTED_NAMES - found)
    assert not stale, f"gone, so remove from DOCUMENTED_NAMES: {stale}"


def test_no_import_circles():
    graph = _package_graph()
    found = [c for c in circles(graph) if c not in KNOWN_CIRCLES]
    assert not found, "import circles (module-level and function-level imports):\n" + "\n".join(
        _describe_circle(c, graph) for c in found
    )


def test_known_circles_still_occur():
    stale = [sorted(c) for c in KNOWN_CIRCLES if c not in circles(_package_graph())]
    assert not stale, f"gone, so remove from KNOWN_CIRCLES: {stale}"


@functools.cache
def _config_problems() -> dict[str, list[str]]:
    """File -> its ``_target_`` / ``$``-expression names that resolve to nothing, over templates, shipped bundles and
    the package's Python code."""
    problems: dict[str, list[str]] = {}
    for path, _ in config_files():
        for name in data_references(_load_config(path)):
            _, problem = resolve_name(name, _MODULES)
            if problem:
                problems.setdefault(path.relative_to(ROOT.parent).as_posix(), []).append(f"{name}: {problem}")
    for path in _MODULES.values():
        for line, name in config_references(ast.parse(path.read_text(encoding="utf-8")), dotted_strings=False):
            _, problem = resolve_name(name, _MODULES)
            if problem:
                problems.setdefault(path.relative_to(ROOT.parent).as_posix(), []).append(f"{line}: {name}: {problem}")
    return problems


def test_config_references_name_something():
    """Every ``_target_`` / ``$``-expression name of the templates and shipped bundles exists (a moved class would
    otherwise fail only when a bundle runs)."""
    problems = {f: p for f, p in _config_problems().items() if f not in KNOWN_STALE_CONFIGS}
    assert not problems, "config references to nothing:\n" + "\n".join(
        f"{f}: {p}" for f, ps in sorted(problems.items()) for p in sorted(set(ps))
    )


def test_known_stale_configs_still_stale():
    stale = sorted(set(KNOWN_STALE_CONFIGS) - set(_config_problems()))
    assert not stale, f"their names resolve again, so remove from KNOWN_STALE_CONFIGS: {stale}"


def test_the_scan_sees_late_imports_and_config_files():
    """Function-level imports are part of the graph and the layer check, and the config files are found."""
    late = [
        (line, target)
        for line, target, inside in imported_modules(
            ast.parse(_MODULES["monai_transfer.networks.registry"].read_text()),
            "monai_transfer.networks.registry",
            False,
        )
        if inside
    ]
    assert any(t == "monai_transfer.networks.backbones" for _, t in late)
    assert "monai_transfer.networks.backbones" in _package_graph()["monai_transfer.networks.registry"]
    kinds = {(p.suffix, layer) for p, layer in config_files()}
    assert (".json", "bundle") in kinds and any(layer != "bundle" for _, layer in kinds)


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
        (
            "monai_transfer.losses.fake",
            "from importlib import import_module\nimport_module(f'monai_transfer.ssl.{x}')\n",
            "ssl",
        ),
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


def test_a_late_import_going_up_is_named_as_such():
    [v] = _check(
        "class A:\n    def f(self):\n        from monai_transfer.cli import main\n", "monai_transfer.data.fake"
    )
    assert v.kind == "import inside a function" and "import inside a function" in str(v)
    [v] = _check("from monai_transfer.cli import main\n", "monai_transfer.data.fake")
    assert v.kind == "import"
    [v] = _check("f = lambda: __import__('monai_transfer.study.spec')\n", "monai_transfer.engines.fake")
    assert v.kind == "import inside a function" and v.target_layer == "study"


@pytest.mark.parametrize(
    "source,target_layer",
    [
        ('c = {"_target_": "monai_transfer.finetune.trainer.AtomicBestCheckpoint"}\n', "finetune"),
        ('c = {"_target_": f"monai_transfer.ssl.{name}"}\n', "ssl"),
        ('c = {"net": "$monai_transfer.engines.distributed.wrap_ddp(@network)"}\n', "engines"),
        ('c = f"$monai_transfer.bundle.templates.pretrain.finetune_bundle({x})"\n', "bundle"),
        (
            'NAMES = ("monai.handlers.StatsHandler", "monai_transfer.finetune.trainer.AtomicBestCheckpoint")\n',
            "finetune",
        ),
        ('TARGET = "monai_transfer.ssl.methods.simclr:SimCLR"\n', "ssl"),
    ],
)
def test_checker_reads_config_strings(source, target_layer):
    violations = _check(source, "monai_transfer.networks.fake")
    assert [(v.target_layer, v.kind) for v in violations] == [(target_layer, "config reference")]


@pytest.mark.parametrize(
    "source",
    [
        '"""Docstring naming :mod:`monai_transfer.ssl.run` and ``monai_transfer.finetune``."""\n',
        'c = {"_target_": "monai_transfer.utils.registry.Registry", "x": "@monai_transfer"}\n',
        'message = "see monai_transfer.cli for the command"\n',
    ],
)
def test_checker_ignores_prose_and_downward_config_strings(source):
    assert _check(source, "monai_transfer.networks.fake") == []


def test_checker_reads_json_configs():
    config = {
        "imports": ["$import monai_transfer.engines.distributed"],
        "trainer": {"_target_": "monai_transfer.finetune.trainer.AtomicBestCheckpoint", "path": "$@bundle_root"},
        "handlers": [{"_target_": "monai_transfer.study.runner.Thing"}],
    }
    got = sorted((v.target_layer, v.line) for v in check_config(config, "bundles/x/configs/train.json", "bundle"))
    assert got == [("study", 0)]
    assert [v.target_layer for v in check_config(config, "monai_transfer/engines/templates/x.json", "engines")] == [
        "finetune",
        "study",
    ]


def test_circles_are_found_through_late_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [frozenset({"a", "b", "c"})]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_resolve_name_finds_missing_targets():
    assert resolve_name("monai_transfer.networks.registry.create_backbone", _MODULES) == (
        "monai_transfer.networks.registry",
        None,
    )
    assert resolve_name("monai_transfer.networks.registry.NoSuchThing", _MODULES)[1]
    assert resolve_name("monai_transfer.nosuchpackage.x", _MODULES)[0] == "monai_transfer"
