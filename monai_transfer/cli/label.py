"""The ``label`` commands: ``setup`` (MONAI Label's own environment) and ``serve`` (our bundles in a real server).

Argument parsing only: the work is done by :mod:`monai_transfer.label`.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import signal
import sys
from pathlib import Path

from monai_transfer.cli._common import HelpFormatter, ParagraphHelpFormatter, help_by_default


def _python(args: argparse.Namespace) -> Path:
    from monai_transfer.label import ensure_environment

    if args.python:
        return Path(args.python)
    return ensure_environment(args.env, progress=lambda line: print(line, file=sys.stderr))


def _cmd_setup(args: argparse.Namespace) -> int:
    from monai_transfer.label import ensure_environment

    python = ensure_environment(args.env, reinstall=args.reinstall, progress=lambda line: print(line, file=sys.stderr))
    print(python)
    return 0


def _default_app_dir(bundles, studies: Path) -> Path:
    from monai_transfer.label.environment import default_environment_dir

    key = "\n".join([str(studies), *(f"{b.name}={b.path}" for b in bundles)])
    return default_environment_dir().parent / "label_apps" / hashlib.sha256(key.encode()).hexdigest()[:12]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_serve(args: argparse.Namespace) -> int:
    from monai_transfer.label import (
        build_app,
        served_bundles,
        server_command,
        start_server,
        stop_server,
        wait_until_ready,
    )

    if args.studies.startswith(("http://", "https://")):
        studies = args.studies  # a DICOMweb server (OHIF's set-up): MONAI Label's own DICOMweb datastore reads it
    else:
        studies = Path(args.studies).expanduser().absolute()
        if not studies.is_dir():
            raise FileNotFoundError(f"--studies {studies}: no such folder (a folder of images, e.g. NIfTI files)")
    bundles = served_bundles(args.bundle)
    if not ipaddress.ip_address(args.host).is_loopback:
        print(
            f"warning: listening on {args.host}: anyone who reaches this machine can run and retrain these models "
            "(MONAI Label's authentication is off by default)",
            file=sys.stderr,
        )
    for b in bundles:
        state = "trained weights" if b.has_weights else "NO models/model.pt yet: /infer answers 409 until /train"
        print(f"{b.name}: {b.task}, {b.spatial_dims}D, classes {', '.join(b.labels)}; {state} ({b.path})")
    python = _python(args)
    app = build_app(bundles, args.app_dir or _default_app_dir(bundles, studies))
    conf = dict(args.conf or [])
    cmd = server_command(python, app, studies, [b.name for b in bundles], args.port, host=args.host, conf=conf)
    url = f"http://{args.host}:{args.port}"
    # the server runs in its own process group: stop it on SIGTERM / SIGHUP too, and on SIGINT even where a
    # background launch left SIGINT ignored, or it would outlive this command
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = start_server(cmd)
    try:
        wait_until_ready(url, proc, timeout=args.timeout)
        print(f"MONAI Label is serving {', '.join(b.name for b in bundles)} at {url} (Ctrl-C stops it)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(proc)


_SERVE_EPILOG = """examples:
  monai-transfer label serve --bundle runs/lpft/bundle --studies demo/images
  monai-transfer label serve --bundle seg=runs/lpft/bundle --bundle lesion=runs/cls/bundle \\
      --studies demo/images --port 8000
  curl http://127.0.0.1:8000/info/
  curl -X POST "http://127.0.0.1:8000/infer/seg?image=sub-000_T1w&output=image" -o seg.nii.gz
  curl -X POST "http://127.0.0.1:8000/train/seg?run_sync=true" -H "Content-Type: application/json" \\
      -d '{"max_epochs": 2}'
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser(
        "label",
        help="serve bundles in a real MONAI Label server (setup, serve)",
        description=(
            "MONAI Label serves models to 3D Slicer and OHIF: infer on a study, retrain on new labels. MONAI Label "
            "0.8.5 runs in its own virtual environment (its dependencies clash with this package's), created once by "
            "'label setup' (or the first 'label serve') and cached. See docs/monailabel.md."
        ),
    )
    lsub = label.add_subparsers(dest="label_command", metavar="LABEL_COMMAND")

    p = lsub.add_parser(
        "setup",
        help="create (once) the virtual environment MONAI Label runs in; prints its Python",
        description=(
            "Create the MONAI Label 0.8.5 environment: a venv that sees this environment's packages (torch, MONAI, "
            "monai_transfer) and adds MONAI Label with the versions that work beside them (pydicom<3, "
            "dicomweb-client 0.59.3, pynetdicom<3; no sam2 build). Idempotent: a ready environment is reused at once."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--env",
        default=None,
        help="venv folder (default: ~/.cache/monai_transfer/monailabel-0.8.5-pyXY, " "or under $MONAI_TRANSFER_CACHE)",
    )
    p.add_argument("--reinstall", action="store_true", help="rebuild the environment even if it is ready")
    p.set_defaults(func=_cmd_setup)

    p = lsub.add_parser(
        "serve",
        help="start a MONAI Label server for bundles (segmentation and classification)",
        description=(
            "Serve bundles in a real MONAI Label server, in the foreground until Ctrl-C. Segmentation bundles return "
            "a label map with the input's shape and affine; classification bundles return the class names and scores "
            "as JSON. POST /train/<model> fine-tunes a bundle through its own configs/train.json on the datastore's "
            "labels (segmentation: label files saved in MONAI Label; classification: STUDIES/labels.csv with columns "
            "image,label, or a 'label' in an image's info) and replaces the bundle's models/model.pt IN PLACE with "
            "the best validation weights (copy the bundle first to keep the old ones). Listens on 127.0.0.1 and works "
            "offline unless told otherwise. MONAI Label keeps its datastore (labels/, datastore_v2.json) in STUDIES; "
            "images are never modified."
        ),
        epilog=_SERVE_EPILOG,
        formatter_class=ParagraphHelpFormatter,
    )
    p.add_argument(
        "--bundle",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a bundle folder to serve (repeat for more); the model name is the folder name unless NAME= is given",
    )
    p.add_argument(
        "--studies",
        required=True,
        help="the folder of images MONAI Label serves (its datastore), or a DICOMweb URL (e.g. an Orthanc server's "
        "http://127.0.0.1:8042/dicom-web for OHIF)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument(
        "--app-dir",
        default=None,
        help="where the app (main.py and model/ links) is written "
        "(default: a folder per bundle set under ~/.cache/monai_transfer/label_apps)",
    )
    p.add_argument("--env", default=None, help="the MONAI Label venv (default: the one 'label setup' makes)")
    p.add_argument("--python", default=None, help="a Python that already has monailabel 0.8.5 (skips the venv)")
    p.add_argument(
        "--conf",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="extra MONAI Label app setting (e.g. --conf preload true, --conf class_labels_csv FILE); the defaults "
        "zoo_source=local and sam2=false keep the server offline",
    )
    p.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for the server to answer (default 180)"
    )
    p.set_defaults(func=_cmd_serve)

    help_by_default(label)
