"""Text summary of an index: series per modality, quarantined files and series with reasons."""

from __future__ import annotations

import os
from collections import Counter

from .index import connect, get_meta, read_quarantine, read_series

__all__ = ["summary_report"]


def summary_report(index_dir: str | os.PathLike, max_items: int = 50) -> str:
    """Human-readable report of the index (no patient identifiers: paths, UIDs, descriptions and counts only).

    Args:
        index_dir: the index folder written by ``scan``.
        max_items: most quarantine entries listed per level (the CSV in ``index_dir`` has them all).

    Returns:
        The report text (the caller prints it).
    """
    conn = connect(index_dir)
    try:
        series = read_series(conn)
        quarantine = read_quarantine(conn)
        n_files = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        root = get_meta(conn, "last_root")
    finally:
        conn.close()
    lines = [f"DICOM index: {index_dir}", f"last scanned root: {root}", f"files indexed: {n_files}"]
    lines.append(f"series: {len(series)}")
    by_mod: Counter[str] = Counter(r["modality"] or "?" for r in series)
    by_status: Counter[str] = Counter(r["status"] for r in series)
    lines.append("series per modality:")
    for mod, n in sorted(by_mod.items()):
        slices = sum(r["frames"] for r in series if (r["modality"] or "?") == mod)
        lines.append(f"  {mod:<6} {n:>6} series {slices:>8} slices/frames")
    lines.append("series status: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    warn = [r for r in series if r["status"] == "warning"]
    if warn:
        lines.append(f"series with warnings: {len(warn)}")
        for r in warn[:max_items]:
            lines.append(f"  {r['series_key']}: {'; '.join(r['issues'])}")
    for level in ("file", "series"):
        entries = [q for q in quarantine if q["level"] == level]
        lines.append(f"quarantined {level if level == 'series' else level + 's'}: {len(entries)}")
        kinds: Counter[str] = Counter(q["kind"] for q in entries)
        for kind, n in sorted(kinds.items()):
            lines.append(f"  {kind}: {n}")
        for q in entries[:max_items]:
            lines.append(f"    {q['target']}: {q['reason']}")
        if len(entries) > max_items:
            lines.append(f"    ... {len(entries) - max_items} more in quarantine.csv")
    return "\n".join(lines)
