"""Write ``constraints/test.txt``: the exact versions, installed in this environment, of everything that
``pip install -e ".[test]"`` (plus torch and torchvision) pulls in, so that ``scripts/test.sh`` installs a known set and a
new release on the registry cannot turn a fresh machine's test run red (issue 21).

Run it in an environment where the suite passes, after ``bash scripts/test.sh`` installed the test needs::

    python scripts/freeze_test_constraints.py            # rewrites constraints/test.txt
    python scripts/freeze_test_constraints.py --check    # exit 1 if this environment differs from the file

Only the dependency closure of the package's requirements (base + ``test`` extra, markers evaluated here) is written,
not whatever else the environment holds.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "constraints" / "test.txt"
PACKAGE = "monai_transfer"
EXTRAS = ("test",)
ALSO = ("torch", "torchvision")  # installed first by scripts/test.sh and scripts/quickstart.sh, from exact pins


def closure() -> dict[str, str]:
    """``{canonical name: installed version}`` of every distribution the package (with ``EXTRAS``) needs here."""
    versions: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(PACKAGE, frozenset(EXTRAS))] + [(n, frozenset()) for n in ALSO]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{name} is required but not installed: run 'bash scripts/test.sh' first")
        if key[0] != canonicalize_name(PACKAGE):
            versions[key[0]] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None:
                envs = [{**default_environment(), "extra": e} for e in (extras or {""})]
                if not any(req.marker.evaluate(env) for env in envs):
                    continue
            todo.append((req.name, frozenset(req.extras)))
    return versions


def render(versions: dict[str, str]) -> str:
    head = [
        "# The test environment, pinned (issue 21): written by scripts/freeze_test_constraints.py from an environment",
        "# where the whole suite passed; scripts/test.sh installs with '-c constraints/test.txt'.",
        f"# Python {sys.version_info.major}.{sys.version_info.minor}, Linux x86_64. Regenerate, rerun the suite, commit.",
    ]
    return "\n".join(head + [f"{n}=={v}" for n, v in sorted(versions.items())]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args()
    text = render(closure())
    if args.check:
        pinned = dict(re.findall(r"^([^#=\s]+)==(\S+)$", OUT.read_text(), re.M))
        here = dict(re.findall(r"^([^#=\s]+)==(\S+)$", text, re.M))
        diff = sorted(f"{n}: pinned {pinned.get(n)}, here {here.get(n)}" for n in pinned.keys() | here.keys()
                      if pinned.get(n) != here.get(n))  # fmt: skip
        print("\n".join(diff) or "this environment matches constraints/test.txt")
        return 1 if diff else 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({text.count(chr(10)) - 3} pins)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
