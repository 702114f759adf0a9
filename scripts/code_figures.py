"""Print the code-health figures issue 22 tracks: the longest parameter lists, the files that name ``amp``, import
circles, functions over 100 lines, ``# fmt: skip`` markers and the lines in ``ssl/`` and ``finetune/``.

    python scripts/code_figures.py

Counts are read from the source with ``ast``; import circles are the layering test's (``tests/test_layering.py``:
imports at module and function level both count), so it needs the test dependencies.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "monai_transfer"


def _layering():
    """The layering test's import graph and circle finder (one definition of what counts as an import)."""
    spec = importlib.util.spec_from_file_location("test_layering", ROOT.parent / "tests" / "test_layering.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    files = sorted(ROOT.rglob("*.py"))
    layering = _layering()
    circles = layering.circles(layering.import_graph())
    funcs: list[tuple[int, int, str]] = []
    amp_files = skips = 0
    for path in files:
        text = path.read_text()
        tree = ast.parse(text)
        amp_files += bool(re.search(r"\bamp\b", text))
        skips += text.count("fmt: skip")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                n -= bool(a.args and a.args[0].arg in ("self", "cls"))
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                funcs.append((n, length, f"{path.relative_to(ROOT.parent)}:{node.name}"))
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
        print("circle:", " <-> ".join(sorted(c)))
    for _, length, name in long:
        print(f"over 100 lines: {name} ({length})")


if __name__ == "__main__":
    main()
