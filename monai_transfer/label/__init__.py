"""Serve our bundles in a real MONAI Label server (``monai-transfer label setup|serve``).

MONAI Label runs in its own virtual environment (:mod:`~monai_transfer.label.environment`); this package's modules
that import ``monailabel`` (:mod:`~monai_transfer.label.app`, :mod:`~monai_transfer.label.tasks`) run only there, so
nothing here imports them. See ``docs/monailabel.md``.
"""

from monai_transfer.label.bundles import BundleServeError, ServedBundle, read_served_bundle, served_bundles
from monai_transfer.label.environment import (
    MONAILABEL_VERSION,
    LabelEnvironmentError,
    default_environment_dir,
    ensure_environment,
)
from monai_transfer.label.server import (
    LOOPBACK,
    ServerError,
    build_app,
    free_port,
    server_command,
    start_server,
    stop_server,
    wait_until_ready,
)

__all__ = [
    "MONAILABEL_VERSION",
    "LOOPBACK",
    "BundleServeError",
    "LabelEnvironmentError",
    "ServedBundle",
    "ServerError",
    "build_app",
    "default_environment_dir",
    "ensure_environment",
    "free_port",
    "read_served_bundle",
    "served_bundles",
    "server_command",
    "start_server",
    "stop_server",
    "wait_until_ready",
]
