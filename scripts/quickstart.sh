#!/usr/bin/env bash
# Install the package and run the main job: the demo study (see README, "Quickstart"): starting points compared on
# the simulated demo data, with a report. Outputs go to ${1:-runs/demo_study}; run again, it resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -e .
monai-transfer study run --preset demo --out "${1:-runs/demo_study}"
