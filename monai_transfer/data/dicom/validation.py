"""Group indexed headers into series, split mixed stacks, sort slices and check consistency.

A SeriesInstanceUID may hold several stacks (localisers in three planes, several sizes, several acquisitions or
multi-frame objects side by side). Files of one UID are split into stacks by orientation, size, pixel spacing and
samples per pixel; each multi-frame object is its own stack; a stack whose positions repeat is further split by
AcquisitionNumber / TemporalPositionIdentifier when that removes the repeats. Slices are sorted by their position
along the slice normal (never by file name or InstanceNumber). Missing slices, irregular spacing, duplicate positions,
duplicate SOPInstanceUIDs and mixed frames of reference (FrameOfReferenceUID) are reported per series.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .geometry import affine_ras, positions_along_normal, slice_normal, spacing_and_gaps

__all__ = ["build_series", "STATUS_OK", "STATUS_WARNING", "STATUS_QUARANTINED"]

STATUS_OK = "ok"
STATUS_WARNING = "warning"
STATUS_QUARANTINED = "quarantined"
_ORIENT_TOL = 1e-3


def _stack_signature(h: dict[str, Any]) -> tuple:
    spacing = tuple(round(v, 4) for v in h["pixel_spacing"]) if h.get("pixel_spacing") else None
    return (h.get("rows"), h.get("columns"), spacing, h.get("samples_per_pixel"))


def _split(items: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """Split one UID's files into stacks (orientation clustered within a tolerance)."""
    groups: list[tuple[tuple, np.ndarray | None, list]] = []
    singles: list[list] = []
    for path, h in items:
        if (h.get("frames") or 1) > 1:
            singles.append([(path, h)])
            continue
        sig = _stack_signature(h)
        ori = np.asarray(h["orientation"]) if h.get("orientation") else None
        for gsig, gori, members in groups:
            same_ori = (gori is None and ori is None) or (
                gori is not None and ori is not None and float(np.max(np.abs(gori - ori))) < _ORIENT_TOL
            )
            if gsig == sig and same_ori:
                members.append((path, h))
                break
        else:
            groups.append((sig, ori, [(path, h)]))
    stacks = [m for _, _, m in groups] + singles
    out: list[list] = []
    for stack in stacks:
        out.extend(_split_repeats(stack))
    return out


def _split_repeats(stack: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """Split by acquisition/temporal position when positions repeat and the split removes the repeats."""
    h0 = stack[0][1]
    if len(stack) < 2 or not h0.get("orientation") or any(h.get("position") is None for _, h in stack):
        return [stack]
    d = positions_along_normal(h0["orientation"], [h["position"] for _, h in stack])
    if len(np.unique(np.round(d, 3))) == len(d):
        return [stack]
    for key in ("acquisition_number", "temporal_position"):
        parts: dict[Any, list] = defaultdict(list)
        for item, dist in zip(stack, d):
            parts[item[1].get(key)].append((item, dist))
        if len(parts) < 2:
            continue
        if all(len(np.unique(np.round([x[1] for x in p], 3))) == len(p) for p in parts.values()):
            return [[x[0] for x in parts[k]] for k in sorted(parts, key=lambda v: (v is None, v))]
    return [stack]


def _describe_split(stacks: list[list[tuple[str, dict[str, Any]]]]) -> str:
    why = []
    sizes = {(s[0][1].get("rows"), s[0][1].get("columns")) for s in stacks}
    if len(sizes) > 1:
        why.append("mixed sizes " + ", ".join(f"{r}x{c}" for r, c in sorted(sizes, key=str)))
    oris = {tuple(np.round(s[0][1].get("orientation") or [], 3)) for s in stacks}
    if len(oris) > 1:
        why.append("different orientations")
    if any((s[0][1].get("frames") or 1) > 1 for s in stacks):
        why.append("multi-frame objects")
    acq = {s[0][1].get("acquisition_number") for s in stacks}
    if len(acq) > 1 and not why:
        why.append("different acquisitions")
    return f"SeriesInstanceUID holds {len(stacks)} stacks ({'; '.join(why) or 'different pixel spacing'})"


def _stack_record(uid: str, key: str, stack: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    h0 = stack[0][1]
    issues: list[str] = []
    status = STATUS_OK
    rows, cols = h0.get("rows"), h0.get("columns")
    px = h0.get("pixel_spacing") or None
    if px is None:
        issues.append("no PixelSpacing: in-plane spacing assumed 1 mm")
        px = [1.0, 1.0]
    orientation = h0.get("orientation")
    multi = (h0.get("frames") or 1) > 1
    frame_order: list[int] | None = None
    files = [p for p, _ in stack]
    affine: np.ndarray
    if multi:
        n = h0["frames"]
        positions = h0.get("frame_positions")
    else:
        n = len(stack)
        positions = [h.get("position") for _, h in stack] if all(h.get("position") for _, h in stack) else None
    dz = h0.get("spacing_between_slices") or h0.get("slice_thickness") or 1.0
    if orientation and positions:
        d = positions_along_normal(orientation, positions)
        order = np.argsort(d, kind="stable")
        d_sorted = d[order]
        if multi:
            frame_order = [int(i) for i in order]
            if not h0.get("frame_orientations_consistent", True):
                issues.append("frames have different orientations")
                status = STATUS_QUARANTINED
        else:
            files = [files[i] for i in order]
        spacing, gaps, dups = spacing_and_gaps(d_sorted)
        if dups:
            status = STATUS_QUARANTINED
            where = ", ".join(f"{d_sorted[i]:.3f}" for i in dups[:5])
            issues.append(f"duplicate slice position: {len(dups)} slice(s) repeat a position (at {where} mm)")
        if gaps:
            status = STATUS_QUARANTINED
            missing = sum(max(g[1], 0) for g in gaps)
            where = ", ".join(f"{d_sorted[i]:.3f}..{d_sorted[i + 1]:.3f}" for i, _ in gaps[:5])
            issues.append(
                f"missing slice(s) / irregular spacing: {len(gaps)} gap(s), about {missing:g} slice(s) missing "
                f"(between {where} mm; regular spacing {spacing:.4f} mm)"
            )
        first = np.asarray(positions[int(order[0])], dtype=np.float64)
        if n > 1 and spacing is not None and not gaps and not dups:
            # ITK/MONAI convention: third axis along the slice normal, spacing = |last - first| / (n - 1)
            step = (np.asarray(positions[int(order[-1])]) - first) / (n - 1)
            dz = float(np.linalg.norm(step))
            if np.linalg.norm(step - slice_normal(orientation) * dz) > 0.01 * dz:
                issues.append("slice positions not along the slice normal (gantry tilt / sheared stack)")
            affine = affine_ras(orientation, px, first, slice_spacing=dz)
        else:
            dz = spacing if spacing is not None else dz
            affine = affine_ras(orientation, px, first, slice_spacing=dz)
    else:
        if n > 1:
            issues.append("no patient geometry (ImagePositionPatient/ImageOrientationPatient missing): unit spacing")
            dz = 1.0
            files = [p for p, _ in sorted(stack, key=lambda x: (x[1].get("instance_number") or 0, x[0]))]
        affine = affine_ras(orientation or [1, 0, 0, 0, 1, 0], px, h0.get("position") or [0, 0, 0], slice_spacing=dz)
    frames_of_reference = {h.get("frame_of_reference_uid") for _, h in stack} - {None}
    if len(frames_of_reference) > 1:
        # positions in different frames of reference are not comparable: the geometry above means nothing
        issues.append(
            f"mixed frames of reference: {len(frames_of_reference)} FrameOfReferenceUIDs in one stack "
            "(slice positions are not comparable)"
        )
        status = STATUS_QUARANTINED
    if status == STATUS_OK and issues:
        status = STATUS_WARNING
    syntaxes = sorted({h.get("transfer_syntax") or "?" for _, h in stack})
    return {
        "series_key": key,
        "series_uid": uid,
        "study_uid": h0.get("study_uid"),
        "modality": h0.get("modality"),
        "body_part": h0.get("body_part"),
        "study_description": h0.get("study_description"),
        "series_description": h0.get("series_description"),
        "series_number": h0.get("series_number"),
        "sop_class": h0.get("sop_class"),
        "dims": [cols, rows, n],
        "spacing": [float(px[1]), float(px[0]), float(dz)],
        "orientation": orientation,
        "frames": n,
        "n_files": len(stack),
        "samples_per_pixel": h0.get("samples_per_pixel") or 1,
        "multi_frame": multi,
        "frame_order": frame_order,
        "transfer_syntaxes": syntaxes,
        "affine": np.asarray(affine).round(8).tolist(),
        "patient_id_hash": h0.get("PatientID_hash"),
        "patient_name_hash": h0.get("PatientName_hash"),
        "birth_date_hash": h0.get("PatientBirthDate_hash"),
        "files": files,
        "status": status,
        "issues": issues,
    }


def build_series(
    headers: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Build series records from file headers.

    Args:
        headers: ``{path: header}`` of the readable image files.

    Returns:
        ``(records, file_issues)``: one record per stack, and ``(path, kind, reason)`` for files left out of every
        stack (duplicate SOPInstanceUIDs).
    """
    by_uid: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for path in sorted(headers):
        by_uid[headers[path]["series_uid"]].append((path, headers[path]))
    records: list[dict[str, Any]] = []
    file_issues: list[tuple[str, str, str]] = []
    for uid in sorted(by_uid):
        seen: dict[str, str] = {}
        items = []
        for path, h in by_uid[uid]:
            if h["sop_uid"] in seen:
                file_issues.append(
                    (path, "duplicate_instance", f"duplicate SOPInstanceUID (same instance as {seen[h['sop_uid']]})")
                )
                continue
            seen[h["sop_uid"]] = path
            items.append((path, h))
        n_dup = len(by_uid[uid]) - len(items)
        stacks = _split(items)
        stacks.sort(key=lambda s: (s[0][1].get("rows") or 0, s[0][1].get("columns") or 0, s[0][0]))
        for k, stack in enumerate(stacks):
            key = uid if len(stacks) == 1 else f"{uid}#{k + 1}"
            rec = _stack_record(uid, key, stack)
            if len(stacks) > 1:
                rec["issues"].insert(0, _describe_split(stacks))
                if rec["status"] == STATUS_OK:
                    rec["status"] = STATUS_WARNING
            if n_dup:
                rec["issues"].append(f"{n_dup} file(s) with a duplicate SOPInstanceUID ignored")
                if rec["status"] == STATUS_OK:
                    rec["status"] = STATUS_WARNING
            records.append(rec)
    return records, file_issues
