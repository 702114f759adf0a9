"""``python -m monai_transfer.cli`` (what ``torchrun -m monai_transfer.cli pretrain ...`` runs)."""

from __future__ import annotations

import sys

from monai_transfer.cli import main

sys.exit(main())
