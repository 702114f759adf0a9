"""The ``monai-transfer`` command.

Subcommands (one module each in this package):
    backbones   list the registered backbones (dims, embedding size, known pretrained weights)
    data        index DICOM trees (scan), summarise an index (report), write the demo data (demo)
    weights     known published weights (sources); how a checkpoint fits a backbone (inspect); map a layout no
                adapter claims (doctor); convert one
    pretrain    self-supervised pretraining (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg, DINO, MAE, SimMIM,
                Models Genesis, SwinUNETR multi-task) in 2D/3D, resumable, under torchrun too
    finetune    fine-tune a backbone with a named strategy
    evaluate    a fine-tuned checkpoint's metrics with bootstrap intervals (over patients where cases share one)
    rank        rank starting points before fine-tuning (kNN, linear probe, LogME, domain gap)
    robustness  a fine-tuned checkpoint under 9 corruptions x 5 severities
    bundle      write a MONAI bundle for a starting point (create); lint a bundle (check)
    study       compare starting points under label scarcity, imbalance and domain shift (run, plan, report)
    label       serve bundles in a real MONAI Label server (setup: its environment; serve)
    tour        the longest end-to-end path on the demo data (the quickstart's main job)

User errors (a file that is not there, a checkpoint that does not fit or is not a checkpoint, a training checkpoint
that cannot be resumed, weights that cannot be downloaded, a bad datalist) print one ``error:`` line and exit with status 2; anything else is a bug and keeps its
traceback. ``main`` also shows MONAI's "nvImageCodec is not available" message at most once per process (it repeats
for every image loader otherwise); nothing else is filtered.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_transfer.cli import bundle, data, evaluation, finetune, label, networks, pretrain, study, tour, weights
from monai_transfer.cli._common import finish_help, quiet_optional_decoder_messages

__all__ = ["main", "build_parser"]


def _user_errors() -> tuple[type[BaseException], ...]:
    from monai_transfer.data import DatalistError, QuarantineError
    from monai_transfer.data.dicomweb import DicomwebError
    from monai_transfer.data.dicomweb.cache import CacheError
    from monai_transfer.data.dicomweb.retrieve import RetrieveError
    from monai_transfer.engines.checkpoint import CheckpointLoadError
    from monai_transfer.label import LabelEnvironmentError, ServerError
    from monai_transfer.study import SpecError, StudyStopped
    from monai_transfer.weights import (
        CheckpointReadError,
        DownloadError,
        HashMismatchError,
        PretrainedLoadError,
        UnsafeCheckpointError,
    )

    return (
        DatalistError,
        QuarantineError,
        DicomwebError,
        RetrieveError,
        CacheError,
        PretrainedLoadError,
        UnsafeCheckpointError,
        HashMismatchError,
        CheckpointReadError,
        CheckpointLoadError,
        DownloadError,
        LabelEnvironmentError,
        ServerError,
        SpecError,
        StudyStopped,
        FileNotFoundError,
        FileExistsError,
        KeyError,
        ValueError,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-transfer",
        description=(
            "Transfer learning and self-supervised pretraining for 2D and 3D medical imaging, on MONAI. "
            "Choose a starting point (ImageNet, SSL, another modality, none), load it into a classification "
            "or segmentation network with a load report, and export it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'monai-transfer COMMAND --help' for the options of each command.",
    )
    from monai_transfer import __version__

    parser.add_argument("--version", action="version", version=f"monai_transfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for module in (networks, data, weights, pretrain, finetune, evaluation, bundle, study, label, tour):
        module.add_parsers(sub)
    return finish_help(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    quiet_optional_decoder_messages()
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
        if "Error(s) in loading state_dict" in message:  # torch's key lists, one per line: keep them on one
            message = " ".join(message.split())
        print(f"error: {message}", file=sys.stderr)
        _let_threads_finish()
        return 2


def _let_threads_finish(timeout_s: float = 30.0) -> None:
    """Wait for worker threads an interrupted step left running (MONAI's cache fill keeps loading the next images
    after one failed); a daemon thread still inside a torch operation at interpreter exit aborts the process
    (``terminate called without an active exception``, exit 134) instead of exiting with status 2."""
    import threading
    import time

    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        # thread-pool workers only (multiprocessing.dummy); monitors such as tqdm's never end and need no waiting
        if thread is not threading.current_thread() and type(thread).__name__ == "DummyProcess":
            thread.join(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
