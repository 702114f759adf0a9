"""Studies: starting points compared under label scarcity, class imbalance and domain shift, in one command.

``monai-transfer study run SPEC.yaml --out DIR`` (or ``--preset NAME``): :func:`load_spec` checks the spec,
:func:`run_study` writes every cell's data (paired across starting points), pretrains the in-study starts once,
runs the cells (one ``finetune`` bundle run each) through an executor into the results store, and writes the report
(statistics over seeds, paired tests against the reference with Holm's correction, plots) and the best starting
point's bundle per target. See ``docs/studies.md``.
"""

from monai_transfer.study.cells import Cell, expand_cells
from monai_transfer.study.presets import list_presets, preset_path
from monai_transfer.study.runner import StudyStopped, plan_study, run_cell, run_study
from monai_transfer.study.spec import Challenge, SpecError, Start, StudySpec, Target, load_spec, parse_spec
from monai_transfer.study.store import ResultsStore

__all__ = [
    "Cell",
    "Challenge",
    "ResultsStore",
    "SpecError",
    "Start",
    "StudySpec",
    "StudyStopped",
    "Target",
    "expand_cells",
    "list_presets",
    "load_spec",
    "parse_spec",
    "plan_study",
    "preset_path",
    "run_cell",
    "run_study",
]
