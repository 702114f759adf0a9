"""The ``data`` commands: ``scan``, ``report`` and ``export`` (DICOM index from a folder or a DICOMweb server, its
summary, its series as a datalist), ``demo`` (the simulated demo data)."""

from __future__ import annotations

import argparse
import json

from monai_transfer.cli._common import help_by_default


def _cmd_data_scan(args: argparse.Namespace) -> int:
    if args.root.startswith(("http://", "https://")):
        from monai_transfer.data.dicomweb import parse_query, scan_server

        stats = scan_server(
            args.root,
            args.index,
            query=parse_query(args.query),
            strict=args.strict,
            verify=args.ca_bundle or not args.insecure,
            full=args.full,
            progress=not args.quiet,
        )
    else:
        if args.query or args.full or args.insecure or args.ca_bundle:
            raise ValueError("--query, --full, --insecure and --ca-bundle apply to a DICOMweb URL, not a folder")
        from monai_transfer.data import scan

        stats = scan(args.root, args.index, strict=args.strict, progress=not args.quiet)
    print(json.dumps(stats.as_dict(), indent=2) if args.json else _format_stats(stats.as_dict()))
    return 0


def _format_stats(stats: dict) -> str:
    return "\n".join(f"{k.replace('_', ' ')}: {round(v, 2) if isinstance(v, float) else v}" for k, v in stats.items())


def _cmd_data_report(args: argparse.Namespace) -> int:
    from monai_transfer.data import summary_report

    print(summary_report(args.index))
    return 0


def _cmd_data_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monai_transfer.data.dicomweb.export import export_datalist

    with tqdm(desc="export", unit="series", disable=args.quiet) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        path = export_datalist(args.index, args.out, cache_dir=args.cache, cache_bytes=int(args.cache_gb * 2**30),
                               labels=args.labels, fractions=args.split, seed=args.seed, modality=args.modality,
                               progress=advance)  # fmt: skip
    print(f"wrote {path}: give it to pretrain, finetune, rank or a study spec (--data {path})")
    return 0


def _cmd_data_demo(args: argparse.Namespace) -> int:
    from monai_transfer.data import make_demo_data

    paths = make_demo_data(
        args.out,
        n_subjects=args.subjects,
        n_sites=args.sites,
        size=args.size,
        lesion_prevalence=args.lesion_prevalence,
        dicom=args.dicom,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
        n_other_modality=args.other_modality,
        lesion_scale=args.lesion_scale,
    )
    print("SIMULATED data built on the real MNI152 template (see README.txt in the output); not patient data.")
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data", help="index DICOM trees, report on them, make demo data", description="Data commands."
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p = dsub.add_parser(
        "scan",
        help="index every DICOM series under ROOT (incremental; ROOT is never written)",
        description=(
            "Walk ROOT (nested folders, any file names, with or without DICOMDIR), group files into series, sort "
            "slices along the slice normal, check geometry (spacing, gaps, duplicates, mixed sizes) and record the "
            "result in an SQLite index in --index. A rescan reads only new or changed files. Unreadable or "
            "inconsistent inputs are quarantined with a reason; patient identifiers are stored only as salted hashes. "
            "ROOT may be a DICOMweb server (Orthanc, a PACS): its series (QIDO-RS, --query filters) are indexed from "
            "their WADO-RS metadata with the same checks; a rescan fetches only new or changed series. Credentials "
            "come from MONAI_TRANSFER_DICOMWEB_TOKEN, MONAI_TRANSFER_DICOMWEB_USER/_PASSWORD or a netrc entry and "
            "are never stored."
        ),
    )
    p.add_argument(
        "root",
        help="folder tree of DICOM files (read only), or a DICOMweb server's root URL (http://HOST:PORT/dicom-web)",
    )
    p.add_argument("--index", required=True, help="folder for the index (must be outside ROOT)")
    p.add_argument(
        "--query",
        action="append",
        metavar="KEY=VALUE",
        help="DICOMweb only: a QIDO-RS series filter (repeatable), e.g. Modality=CT or StudyDate=20240101-",
    )
    p.add_argument(
        "--full", action="store_true", help="DICOMweb only: fetch every series' metadata again, changed or not"
    )
    p.add_argument("--ca-bundle", help="DICOMweb only: CA bundle to verify the https server with")
    p.add_argument("--insecure", action="store_true", help="DICOMweb only: do not verify the https certificate")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable or inconsistent input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the scan statistics as JSON")
    p.set_defaults(func=_cmd_data_scan)
    p = dsub.add_parser(
        "report",
        help="summarise an index: series per modality, quarantined files and why",
        description="Print a readable summary of an index written by 'monai-transfer data scan'.",
    )
    p.add_argument("--index", required=True, help="folder holding the index")
    p.set_defaults(func=_cmd_data_report)
    _add_export_parser(dsub)
    p = dsub.add_parser(
        "demo",
        help="write the demo data: simulated subjects built on the real MNI152 template",
        description=(
            "Generate the embedded demo data deterministically from nilearn's MNI152 template and tissue maps "
            "(real anatomy): simulated subjects by smooth deformation, per-site scanner-like intensity changes, "
            "optional white-matter lesions. Writes NIfTI volumes, datalists for a 3D tissue-segmentation task, a "
            "2D slice task, a lesion-presence classification task, an unlabeled pool and an unlabeled pool of a second, "
            "T2-like simulated modality (other_modality.json), and on request DICOM series. It is a simulation, not "
            "patient data."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (refused if it holds anything but an earlier demo)")
    p.add_argument("--subjects", type=int, default=24, help="labelled simulated subjects")
    p.add_argument("--sites", type=int, default=3, help="simulated scanners/sites")
    p.add_argument("--size", type=int, default=64, help="volume edge in voxels")
    p.add_argument("--lesion-prevalence", type=float, default=0.3, help="fraction of subjects with lesions")
    p.add_argument("--dicom", action="store_true", help="also write every volume as a DICOM series")
    p.add_argument(
        "--other-modality",
        type=int,
        default=None,
        metavar="N",
        help="subjects in the unlabeled pool of a second, T2-like simulated modality (default: as many as the "
        "unlabeled pool; 0: none); the other files are the same either way",
    )
    p.add_argument(
        "--lesion-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="multiply the simulated lesions' radii by S (default 1; at 32^3 lesion presence is learnable from ~70 "
        "volumes only with larger lesions: the study demo uses 3)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-demo folder's content")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_demo)
    help_by_default(data)


def _add_export_parser(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "export",
        help="an index's series (from a folder or a DICOMweb server) as NIfTI volumes and a datalist every command reads",
        description="Write OUT/datalist.json and OUT/images/*.nii.gz from an index's valid series: a server's series "
        "are fetched through a bounded local cache (resumable; credentials from MONAI_TRANSFER_DICOMWEB_TOKEN, "
        "_USER/_PASSWORD or netrc, never stored). Section 'unlabeled' holds every series; with --labels (a CSV of "
        "series_uid or study_uid, and label) the labelled series are split by patient into training, validation and "
        "test. Volumes are named by a hash of the series (no UID or patient identifier in a file name). docs/pacs.md.",
    )
    p.add_argument("index", help="folder holding the index ('monai-transfer data scan')")
    p.add_argument("--out", required=True, help="folder the volumes and datalist.json go to")
    p.add_argument("--labels", default=None, help="CSV with series_uid (or study_uid) and label columns")
    p.add_argument("--split", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"),
                   help="patient fractions of the labelled sections (default: 0.7 0.15 0.15)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    p.add_argument("--modality", default=None, help="only this modality's series (e.g. CT)")
    p.add_argument("--cache", default=None, help="series cache folder (default: ~/.cache/monai_transfer/dicomweb)")
    p.add_argument("--cache-gb", type=float, default=50.0, help="cache size limit in GB (default: 50)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_export)
