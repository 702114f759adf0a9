#!/usr/bin/env bash
# Install the package and run the main job: the longest end-to-end path the package has today
# (see README, "Quickstart"). Outputs go to ${1:-runs/tour}.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -e .
monai-transfer tour --out "${1:-runs/tour}"
