"""Print the code-health figures issue 22 tracks: the longest parameter lists, the files that name ``amp``, import
circles, functions over 100 lines, ``# fmt: skip`` markers and the lines in ``ssl/`` and ``finetune/``.

    python scripts/code_figures.py

Counts are read from the source with ``ast`` (imports at module and function level both count for circles).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "monai_transfer"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, is_pkg: bool) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return {n for n in found if n.startswith("monai_transfer")}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module(p): p for p in files}
    graph: dict[str, set[str]] = {}
    funcs: list[tuple[int, int, str]] = []
    amp_files = skips = 0
    for path in files:
        text = path.read_text()
        tree = ast.parse(text)
        mod = _module(path)
        targets = set()
        for name in _imports(tree, mod, path.name == "__init__.py"):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            # a package's __init__ importing its own submodules is how packages export, not a circle
            if name and name != mod and not name.startswith(mod + "."):
                targets.add(name)
        graph[mod] = targets
        amp_files += bool(re.search(r"\bamp\b", text))
        skips += text.count("fmt: skip")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                n -= bool(a.args and a.args[0].arg in ("self", "cls"))
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                funcs.append((n, length, f"{path.relative_to(ROOT.parent)}:{node.name}"))
    circles = _circles(graph)
    lines = {d: sum(len(p.read_text().splitlines()) for p in (ROOT / d).rglob("*.py")) for d in ("ssl", "finetune")}
    print("| figure | value |\n|---|---|")
    for n, _, name in sorted(funcs, reverse=True)[:5]:
        print(f"| parameters of `{name}` | {n} |")
    print(f"| files naming `amp` | {amp_files} |")
    print(f"| import circles | {len(circles)} |")
    long = sorted((f for f in funcs if f[1] > 100), key=lambda f: -f[1])
    print(f"| functions over 100 lines | {len(long)} |")
    print(f"| `# fmt: skip` markers | {skips} |")
    print(f"| lines in ssl/ | {lines['ssl']} |\n| lines in finetune/ | {lines['finetune']} |")
    for c in circles:
        print("circle:", " <-> ".join(c))
    for _, length, name in long:
        print(f"over 100 lines: {name} ({length})")


if __name__ == "__main__":
    main()
