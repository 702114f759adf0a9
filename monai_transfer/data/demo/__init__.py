"""Demo data: a deterministic simulation built on the real MNI152 template (see :mod:`.generator`)."""

from __future__ import annotations

from .dicom_writer import write_dicom_series
from .generator import DEMO_LABELS, load_anatomy, make_demo_data, simulate_subject, site_params

__all__ = ["make_demo_data", "load_anatomy", "simulate_subject", "site_params", "write_dicom_series", "DEMO_LABELS"]
