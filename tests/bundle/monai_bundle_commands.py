"""Run several ``python -m monai.bundle ...`` commands in one Python process.

Each command runs exactly as on the command line: ``runpy`` executes MONAI's ``monai.bundle`` package as
``__main__`` with that ``sys.argv`` (its ``fire`` entry point parses the arguments). Only Python's and MONAI's
start-up (about 10 s of CPU on the 2-core test machines) is paid once instead of once per command.

Usage::

    python monai_bundle_commands.py '[["run", "--config_file", "configs/train.json", ...], ["run", ...]]'

A failing command stops the process with its exit status (``fire`` exits 2 on a usage error; an exception in a run
gives 1).
"""

from __future__ import annotations

import json
import runpy
import sys
import time


def main() -> None:
    for argv in json.loads(sys.argv[1]):
        sys.argv = ["python -m monai.bundle", *argv]
        start = time.perf_counter()
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=False)
        print(
            f"[monai_bundle_commands] {argv[0]} {' '.join(argv[1:3])}: {time.perf_counter() - start:.1f} s", flush=True
        )


if __name__ == "__main__":
    main()
