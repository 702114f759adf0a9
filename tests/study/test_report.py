"""The study report on the synthetic table: files, CSV columns, Markdown sections, a self-contained HTML page, and a
real headless browser rendering it."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monai_transfer.study.report import BASE_COLUMNS, write_report

SECTION_IDS = (
    "summary",
    "label-efficiency",
    "challenges",
    "decisions",
    "comparisons",
    "transferability",
    "failed",
    "methods",
)
MD_SECTIONS = (
    "## Summary",
    "## Label efficiency",
    "## Imbalance and domain shift",
    "## Decisions and calibration (classification)",
    "## Paired comparisons vs random",
    "## Transferability",
    "## Failed cells",
    "## How this was made",
)
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict[str, str], list[dict]]:
    """One report on the synthetic table (module-scoped: several tests read it)."""
    from .conftest import make_rows

    rows = make_rows()
    out = tmp_path_factory.mktemp("report")
    return write_report(rows, out, reference="random", n_resamples=300), rows


def test_files_exist(report):
    written, _ = report
    expected = {"results_csv", "summary_json", "report_md", "report_html", "label_efficiency", "challenge_drops",
                "comparisons", "transferability"}  # fmt: skip
    assert set(written) == expected
    for path in written.values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    assert not list(Path(written["report_md"]).parent.glob(".*tmp*")), "atomic writes leave no temporary file"
    for key in ("label_efficiency", "challenge_drops", "comparisons", "transferability"):
        assert Path(written[key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_csv(report):
    written, rows = report
    with open(written["results_csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    header = list(table[0])
    assert header[: len(BASE_COLUMNS)] == list(BASE_COLUMNS) and header[-1] == "error"
    assert {"metric_auroc", "metric_accuracy", "metric_mean_dice", "metric_hd95"} <= set(header)
    assert {"transferability_knn", "transferability_linear_probe", "transferability_logme"} <= set(header)
    failed = [r for r in table if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["score"] == "" and "out of memory" in failed[0]["error"]
    by_cell = {r["cell"]: r for r in rows}
    for r in table:
        src = by_cell[r["cell"]]
        if src["score"] is not None:
            assert float(r["score"]) == src["score"]
            assert float(r[f"metric_{src['metric']}"]) == src["score"]


def test_summary_json(report):
    written, rows = report
    data = json.loads(Path(written["summary_json"]).read_text())
    assert data["reference"] == "random" and data["n_cells"] == len(rows) and data["n_failed"] == 1
    assert len(data["summaries"]) == 40 and len(data["comparisons"]) == 30 and len(data["transferability"]) == 6
    power = data["power"]
    assert power["power"] == 0.8 and power["alpha"] == 0.05
    assert power["margins"] == {"auroc": {"margin": 0.01, "source": "default"},
                                "mean_dice": {"margin": 0.01, "source": "default"}}  # fmt: skip
    assert "No effect seen" in power["rule"] and "Too few runs to tell" in power["rule"]
    assert all("mde_80" in c and "seeds_needed" in c and "nonsignificance" in c for c in data["comparisons"])


def test_not_significant_is_always_followed_by_which(report):
    """In the headline, the comparisons table and the rule under it: every "not significant" says which it is."""
    written, _ = report
    data = json.loads(Path(written["summary_json"]).read_text())
    md = Path(written["report_md"]).read_text()
    page = Path(written["report_html"]).read_text()
    nonsig = [c for c in data["comparisons"] if c["verdict"].startswith("no significant difference")]
    assert nonsig and all(c["nonsignificance"] in ("no effect seen", "too few runs to tell") for c in nonsig)
    # the headline names every non-significant start of its target and challenge, with which of the two it is
    for c in nonsig:
        (h,) = [h for h in data["headline"] if h.startswith(f"{c['target']}, {c['challenge']}:")]
        said = re.search(rf"{c['start']} \((no effect seen|too few runs to tell)(: [^)]*)?\)", h)
        assert said and said.group(1) == c["nonsignificance"], h
        if c["nonsignificance"] == "too few runs to tell":
            assert f"{c['mean_diff']:+.3f} needs {c['seeds_needed'] or 'more than 1000'} seeds" in said.group(2)
    assert all(h in md for h in data["headline"])
    assert "| detectable at 80% power | seeds for the observed diff (one test / Holm) | verdict |" in md
    for c in data["comparisons"]:
        if c["mde_80"] is not None:
            cell = f"| ±{c['mde_80']:.3f} | {c['seeds_needed'] or '> 1000'} / {c['seeds_needed_family'] or '> 1000'} |"
            assert cell in md
    for text in (md, page):
        assert "Every &quot;no significant difference&quot; is followed" in text or (
            'Every "no significant difference" is followed' in text
        )
        assert "Equivalence margins: auroc ±0.01 (default); mean_dice ±0.01 (default)." in text


def test_headline_of_a_null_effect(tmp_path, study_rows):
    """Random against a start without an effect: whichever is best, the sentence says which of the two it is."""
    rows = [r for r in study_rows if r["start"] in ("random", "imagenet")]
    written = write_report(rows, tmp_path, n_resamples=50)
    headline = json.loads(Path(written["summary_json"]).read_text())["headline"]
    tested = [h for h in headline if not h.startswith("tissue_seg_3d, domain")]  # n = 2 there: no test
    assert len(tested) == 9
    best_imagenet = [h for h in tested if "with imagenet" in h]
    assert best_imagenet and all(
        re.search(r"not significantly different from random \(mean difference .*\): (no effect seen|too few runs to "
                  r"tell; [-+]\d\.\d+ needs (\d+|more than 1000) seeds)", h) for h in best_imagenet)  # fmt: skip
    assert all(
        re.search(r"the reference itself\. Not significantly different from random: imagenet \((no effect seen|too few)", h)
        for h in tested if "with random" in h
    )  # fmt: skip


def test_equivalence_margin_from_the_spec(tmp_path, study_rows):
    """The spec's equivalence_margin reaches the verdicts: a wide margin turns "too few runs to tell" into "no
    effect seen"."""
    written = write_report(study_rows, tmp_path, spec={"name": "s", "equivalence_margin": {"auroc": 0.2}},
                           n_resamples=50)  # fmt: skip
    data = json.loads(Path(written["summary_json"]).read_text())
    assert data["power"]["margins"]["auroc"] == {"margin": 0.2, "source": "spec"}
    auroc = [c for c in data["comparisons"] if c["metric"] == "auroc" and c["nonsignificance"]]
    assert auroc and all(c["nonsignificance"] == "no effect seen" for c in auroc)
    dice = [c for c in data["comparisons"] if c["metric"] == "mean_dice" and c["nonsignificance"]]
    assert dice and all(c["margin_source"] == "default" for c in dice)


def test_markdown_sections(report):
    written, _ = report
    md = Path(written["report_md"]).read_text()
    positions = [md.index(s) for s in MD_SECTIONS]
    assert positions == sorted(positions)
    assert "significantly better than random" in md
    assert "Not significantly different from random: imagenet (too few runs to tell: " in md
    assert "too few runs to test against random (n=2 paired seeds)" in md
    assert "Holm-adjusted over the whole family of 27" in md
    assert "| start | target | challenge | n | mean diff [95% CI] | p t / p Wilcoxon (Holm)" in md
    for png in ("label_efficiency.png", "challenge_drops.png", "comparisons.png", "transferability.png"):
        assert f"]({png})" in md


def test_html_is_self_contained(report):
    written, _ = report
    page = Path(written["report_html"]).read_text()
    assert "<link" not in page and 'src="http' not in page and "url(" not in page
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == 4
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', im) for im in imgs)
    for sid in SECTION_IDS:
        assert re.search(rf'<section id="{sid}"><h2>[^<]+</h2>', page)
    # the error text of the failed cell holds "<" and "&": escaped, not markup
    assert "CUDA out of memory &lt;simulated&gt; &amp; co" in page and "<simulated>" not in page


def test_escapes_and_fallback_reference(tmp_path, study_rows):
    rows = [dict(r, start="<b>x</b>" if r["start"] == "imagenet" else r["start"]) for r in study_rows]
    rows = [r for r in rows if r["start"] != "random"]
    written = write_report(rows, tmp_path, reference="random", title="T & <i>", n_resamples=50)
    page = Path(written["report_html"]).read_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<title>T &amp; &lt;i&gt;</title>" in page
    md = Path(written["report_md"]).read_text()
    assert "## Paired comparisons vs <b>x</b>" in md and "The requested reference 'random' is not in the table" in md


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary; installs Debian's package once per session when missing."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None:
            pytest.skip("chromium is missing and apt-get is unavailable to install it")
        for cmd in ("apt-get update -qq", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"):
            done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=1200)
            assert done.returncode == 0, f"{cmd} failed: {done.stderr[-2000:]}"
    assert Path(CHROMIUM).exists()
    return CHROMIUM


@pytest.mark.integration
@pytest.mark.slow
def test_html_renders_in_headless_chromium(report, chromium, tmp_path):
    written, _ = report
    page = Path(written["report_html"]).resolve()
    n_images = len(re.findall(r"<img\b", page.read_text()))
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert f'data-rendered="{len(SECTION_IDS)}/{n_images}"' in dom, re.findall(r"<body[^>]*>", dom)
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in dom


def test_decisions_are_reported_with_their_thresholds(tmp_path, study_rows):
    """Classification cells carry the threshold they chose on validation: the report's decisions table gives the rule,
    the thresholds' median and range and the metrics decided at them, accuracy at 0.5 labelled; results.csv has
    each cell's threshold."""
    rows = []
    for i, r in enumerate(study_rows):
        r = dict(r)
        if r["task"] == "classification" and r["status"] == "ok":
            t = 0.6 + 0.01 * (i % 5)
            r["decision"] = {"rule": "youden", "threshold": t, "temperature": None}
            r["metrics"] = {**r["metrics"], "accuracy": 0.8, "balanced_accuracy": 0.75, "accuracy_at_0.5": 0.4}
        rows.append(r)
    written = write_report(rows, tmp_path, reference="random", n_resamples=50)
    md = Path(written["report_md"]).read_text()
    section = md[md.index("## Decisions and calibration") : md.index("## Paired comparisons")]
    line = next(x for x in section.splitlines() if x.startswith("| lesion_cls_3d | full | random |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "youden" and re.fullmatch(r"0\.6\d\d \[0\.6\d\d, 0\.6\d\d\]", cells[5])
    assert cells[7] == "0.800" and cells[11] == "0.400"  # decided accuracy, and accuracy at 0.5 beside it
    assert "tissue_seg_3d" not in section  # segmentation has no threshold
    with open(written["results_csv"], newline="") as f:
        table = list(csv.DictReader(f))
    cls = [r for r in table if r["task"] == "classification" and r["status"] == "ok"]
    assert all(r["threshold_rule"] == "youden" and 0.6 <= float(r["threshold"]) < 0.65 for r in cls)
    assert all(r["threshold"] == "" for r in table if r["task"] == "segmentation")
