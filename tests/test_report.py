"""The HTML report: sections by problem type, self-containment, robustness, the Python API and the CLI.

The browser check (headless Chromium, screenshot) is in test_report_browser.py.
"""

from __future__ import annotations

import base64
import io
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, tiny_config
from PIL import Image

import polymodal
from polymodal import Predictor
from polymodal.datasets.synthetic import generate
from polymodal.errors import ConfigError, PolymodalError, RunDirError
from polymodal.reporting import ReportOptions, build_report, render, report
from polymodal.reporting.context import Scored
from polymodal.reporting.render import template_source
from polymodal.reporting.sections import SECTIONS, sections_for
from polymodal.reporting.sections.explanations import _choose

# Small counts keep each report a few seconds; the sections are the same as with the defaults.
FAST = {"n_examples": 2, "n_bootstrap": 20}
IMG = re.compile(r"<img\b[^>]*>", re.I)
SRC = re.compile(r'\bsrc="([^"]*)"')
SECTION = re.compile(r'<section id="([^"]+)"')


def section_ids(html: str) -> list[str]:
    return SECTION.findall(html)


def section_html(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}"')
    return html[start : html.index("</section>", start)]


def _table(root: Path, n: int, seed: int, prefix: str, name: str, target: str) -> Path:
    """The demo generator's rows; ``target``: 'multiclass' keeps its three labels, 'regression' turns them into a
    number (the count band 0/1/2 plus the reading, so the target is continuous)."""
    frame = generate(root, n, seed=seed, prefix=prefix, missing_rate=0.0)
    if target == "regression":
        band = frame["label"].map({"low": 0.0, "medium": 1.0, "high": 2.0})
        frame["label"] = (band + 0.1 * frame["reading"].fillna(0)).round(3)
    path = root / name
    frame.to_csv(path, index=False)
    return path


def _fit_and_save(root: Path, target: str, problem_type: str | None = None) -> tuple[Path, Path]:
    train = _table(root, 80, 11, "tr_", "train.csv", target)
    test = _table(root, 30, 12, "te_", "test.csv", target)
    p = Predictor("label", config=tiny_config(), problem_type=problem_type, verbose=False, seed=0, preset="fast").fit(
        train
    )
    return p.save(root / "run"), test


@pytest.fixture(scope="module")
def binary_html(run_dir, test_csv, tmp_path_factory) -> str:
    out = report(run_dir, test_csv, tmp_path_factory.mktemp("rep") / "binary.html", **FAST)
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory) -> tuple[Path, Path]:
    return _fit_and_save(tmp_path_factory.mktemp("multi"), "multiclass")


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory) -> tuple[Path, Path]:
    return _fit_and_save(tmp_path_factory.mktemp("regr"), "regression", problem_type="regression")


# ------------------------------------------------------------------------------------------- sections
def test_binary_report_has_every_classification_section(binary_html, run_dir, test_csv):
    ids = section_ids(binary_html)
    assert ids == [
        "summary",
        "schema",
        "training",
        "metrics",
        "confusion",
        "per_class",
        "calibration",
        "roc_pr",
        "importance",
        "gallery",
    ]
    # The metrics are the ones evaluate gives, formatted as the page shows them (4 decimals).
    metrics = Predictor.load(run_dir, verbose=False).evaluate(test_csv)
    page = section_html(binary_html, "metrics")
    for name in ("accuracy", "f1_macro", "roc_auc", "log_loss"):
        assert f"{metrics[name]:.4f}" in page, name
    # Schema: every column with its kind and encoder, and the fusion.
    schema = section_html(binary_html, "schema")
    for col, kind, enc in (
        ("image", "image", "image_cnn"),
        ("audio", "audio", "audio_cnn"),
        ("text", "text", "text_rnn"),
        ("reading", "numeric", "tabular_mlp"),
        ("region", "category", "tabular_mlp"),
    ):
        assert re.search(rf"<td>{col}</td><td>{kind}</td><td>[^<]+</td><td>{enc}\b", schema), col
    assert "concat" in section_html(binary_html, "summary")
    # Per-class table: both classes and the macro average.
    per_class = section_html(binary_html, "per_class")
    assert "<td>no</td>" in per_class and "<td>yes</td>" in per_class and "macro average" in per_class
    # Figures where there should be figures.
    for sid in ("training", "confusion", "calibration", "roc_pr", "importance"):
        assert "<img " in section_html(binary_html, sid), sid


def test_no_robustness_section_without_a_sweep_and_the_summary_says_so(binary_html):
    assert "robustness" not in section_ids(binary_html) and 'href="#robustness"' not in binary_html
    summary = section_html(binary_html, "summary")
    assert re.search(
        r"<td>robustness</td><td>no sweep; run <code>polymodal evaluate RUN TEST.csv --robustness "
        r"--out RUN/robustness</code>",
        summary,
    )


def test_calibration_bins_hold_the_minimum_and_show_their_counts(binary_html):
    from polymodal.reporting.plots import MIN_BIN_ROWS, calibration_bins

    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.9, 1.0, 200), rng.uniform(0.0, 0.9, 12)])  # sparse below 0.9
    observed = rng.random(len(conf)) < conf
    bins = calibration_bins(conf, observed, bins=10, min_rows=MIN_BIN_ROWS)
    assert all(b.rows >= MIN_BIN_ROWS for b in bins) and sum(b.rows for b in bins) == len(conf)
    assert [b.low for b in bins] == sorted(b.low for b in bins) and bins[0].low == 0 and bins[-1].high == 1
    for b in bins:
        inside = (conf >= b.low) & ((conf < b.high) if b.high < 1 else (conf <= 1))
        assert inside.sum() == b.rows and b.mean_predicted == pytest.approx(conf[inside].mean())
        assert b.observed == pytest.approx(observed[inside].mean())
    assert len(calibration_bins(conf[:5], observed[:5])) == 1  # fewer rows than the minimum: one bin
    # The page: a table of the bins with their rows (the 30 test rows, each bin at least the minimum or all rows).
    page = section_html(binary_html, "calibration")
    assert '<th class="num">rows</th>' in page
    table = page[page.index("<table>") :]
    counts = [int(c) for c in re.findall(r"<tr><td>[\d.]+–[\d.]+</td><td class=\"num\">(\d+)</td>", table)]
    assert counts and sum(counts) == 30 and all(c >= min(MIN_BIN_ROWS, 30) for c in counts)
    assert f"at least {MIN_BIN_ROWS} rows" in page
    # Calibrated by default: the diagram before/after temperature scaling and the ECE / log-loss table (issue 17).
    assert "reliability before and after temperature calibration" in page
    assert "ECE, test" in page and "log-loss, validation" in page


def test_epochs_card_says_best_of_run_and_stopped_early_only_before_the_maximum(binary_html):
    from polymodal.reporting.sections.run import epochs_card

    early = epochs_card({"best_epoch": 11, "epochs_run": 16, "max_epochs": 30, "stopped_early": True}, "accuracy")
    assert early.value == "best 12 of 16" and "stopped early (max 30)" in early.help
    # Patience ran out on the last epoch: not "stopped early", it used all the epochs.
    full = epochs_card({"best_epoch": 29, "epochs_run": 30, "max_epochs": 30, "stopped_early": True}, "accuracy")
    assert full.value == "best 30 of 30" and "ran all 30 epochs (the maximum)" in full.help
    assert "stopped early" not in full.help
    timed = epochs_card({"best_epoch": 2, "epochs_run": 4, "max_epochs": 30, "stopped_early": False}, "accuracy")
    assert "time limit" in timed.help and "stopped early" not in timed.help
    summary = section_html(binary_html, "summary")
    assert re.search(r'<div class="value">best \d+ of \d+</div>', summary) and ">kept epoch<" not in summary


def test_gallery_shows_right_and_wrong_predictions(binary_html):
    gallery = section_html(binary_html, "gallery")
    assert "Right predictions" in gallery and "Wrong predictions" in gallery
    assert len(IMG.findall(gallery)) == FAST["n_examples"]
    assert "Share of attribution" in gallery
    importance = section_html(binary_html, "importance")
    assert "CI low" in importance and "drop" in importance and "permutation" in importance


def test_multiclass_report(multiclass_run, tmp_path):
    run, test = multiclass_run
    html = report(run, test, tmp_path / "r.html", **FAST).read_text(encoding="utf-8")
    ids = section_ids(html)
    assert {"confusion", "per_class", "calibration", "importance", "gallery"} <= set(ids)
    assert "roc_pr" not in ids and "residuals" not in ids  # ROC/PR are binary-only
    per_class = section_html(html, "per_class")
    assert all(f"<td>{c}</td>" in per_class for c in ("high", "low", "medium"))
    assert "confidence of the predicted class" in section_html(html, "calibration")


def test_regression_report(regression_run, tmp_path):
    run, test = regression_run
    html = report(run, test, tmp_path / "r.html", **FAST).read_text(encoding="utf-8")
    ids = section_ids(html)
    assert ids == ["summary", "schema", "training", "metrics", "residuals", "importance", "gallery"]
    metrics = Predictor.load(run, verbose=False).evaluate(test)
    assert f"{metrics['rmse']:.4f}" in section_html(html, "metrics")
    assert "<img " in section_html(html, "residuals")
    gallery = section_html(html, "gallery")
    assert "Closest predictions" in gallery and "Largest errors" in gallery


def test_generation_report(tmp_path):
    """Generation models get the parts that apply to them: no probabilities, no importance or attributions."""
    from polymodal.datasets.scenes import make_captioning

    paths = make_captioning(tmp_path / "scenes", n_train=40, n_test=8, seed=0)
    cfg = {
        "task": {"problem_type": "generation", "generation": {"layers": 1, "dim": 32, "heads": 2}},
        "encoders": {
            "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
            "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        },
        "training": {"max_epochs": 1, "batch_size": 16},
    }
    p = Predictor("caption", config=cfg, verbose=False, seed=0).fit(paths.train)
    html = report(p, paths.test, tmp_path / "r.html", n_examples=2).read_text(encoding="utf-8")
    assert section_ids(html) == ["summary", "schema", "training", "metrics", "generated"]
    assert "reference" in section_html(html, "generated") and "bleu" in section_html(html, "metrics").lower()


def test_sections_registry_by_problem_type():
    assert [s.id for s in sections_for("binary")][-3:] == ["robustness", "importance", "gallery"]
    assert "roc_pr" not in {s.id for s in sections_for("multiclass")}
    assert {s.id for s in sections_for("generation")} == {"summary", "schema", "training", "metrics", "generated"}
    assert all(SECTIONS.get(n).problem_types for n in SECTIONS.names())


# ------------------------------------------------------------------------------------------ self-contained
def test_page_is_self_contained(binary_html):
    imgs = IMG.findall(binary_html)
    # curves, confusion, calibration (calibrated; before/after), ROC/PR, importance, gallery
    assert len(imgs) == 6 + FAST["n_examples"]
    for tag in imgs:
        src = SRC.search(tag).group(1)
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
            im.verify()
        assert re.search(r'\balt="[^"]+"', tag)  # every image says what it shows
    # Nothing is fetched: no external URL, no linked stylesheet or script, links only to anchors in the page.
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", re.sub(r'src="data:[^"]*"', "", binary_html))
    assert "<link" not in binary_html and "<script" not in binary_html
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', binary_html))
    assert "<style>" in binary_html


def test_template_ships_as_package_data():
    assert "<!DOCTYPE html>" in template_source()  # read through importlib.resources, as from a wheel
    cfg = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = cfg["tool"]["setuptools"]["package-data"]["polymodal.reporting"]
    pkg = REPO_ROOT / "src" / "polymodal" / "reporting"
    shipped = {p for g in globs for p in pkg.glob(g)}
    assert {p for p in pkg.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")} <= shipped


# ----------------------------------------------------------------------------------------------- robustness
@pytest.fixture(scope="module")
def robustness_json(fitted, test_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rob") / "rob"
    fitted.evaluate(
        test_csv, robustness=True, corruptions={"occlusion": [0.5], "token_dropout": [0.5]}, robustness_out=out
    )
    return out / "robustness.json"


def test_robustness_given_and_found_in_run_dir(fitted, run_dir, test_csv, robustness_json, tmp_path):
    quick = {"n_examples": 0, "n_bootstrap": 0}
    html = report(fitted, test_csv, tmp_path / "a.html", robustness=robustness_json, **quick).read_text("utf-8")
    rob = section_html(html, "robustness")
    assert len(IMG.findall(rob)) == len(fitted.modalities)  # one curve plot per modality
    assert "occlusion" in rob and "token_dropout" in rob
    # Without --robustness, RUN/robustness/robustness.json is picked up.
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "run")
    shutil.copytree(robustness_json.parent, run / "robustness")
    html = report(run, test_csv, tmp_path / "b.html", **quick).read_text("utf-8")
    assert len(IMG.findall(section_html(html, "robustness"))) == len(fitted.modalities)
    assert str(run / "robustness" / "robustness.json") in html
    assert "no sweep" not in section_html(html, "summary")


def test_zero_examples_and_bootstrap_leave_notes(fitted, test_csv, tmp_path):
    html = report(fitted, test_csv, tmp_path / "r.html", n_examples=0, n_bootstrap=0).read_text("utf-8")
    for sid in ("importance", "gallery"):
        sec = section_html(html, sid)
        assert "<img " not in sec and "Left out" in sec
    assert "a model in memory" in html  # a Predictor, not a run directory


# -------------------------------------------------------------------------------------------- bad input
def test_errors_leave_nothing_behind(run_dir, test_csv, tmp_path):
    out = tmp_path / "r.html"
    with pytest.raises(PolymodalError, match="cannot read the robustness report"):
        report(run_dir, test_csv, out, robustness=tmp_path / "missing.json", n_examples=0, n_bootstrap=0)
    with pytest.raises(RunDirError, match="not found"):
        report(tmp_path / "no-run", test_csv, out)
    with pytest.raises(ConfigError, match="is a folder"):
        report(run_dir, test_csv, tmp_path)
    with pytest.raises(ConfigError, match="0 or more"):
        ReportOptions(n_examples=-1)
    with pytest.raises(ConfigError, match="unknown explanation method 'shap'"):
        report(run_dir, test_csv, out, explain_method="shap")
    assert list(tmp_path.iterdir()) == []  # no report, no temp file


def test_table_without_label_is_refused(fitted, small_frame, tmp_path):
    with pytest.raises(PolymodalError, match="label column 'label' is not in the report table"):
        build_report(fitted, small_frame.drop(columns="label"), options=ReportOptions(0, 0))


# ------------------------------------------------------------------------------------------ gallery choice
def _scored(correct: list[bool], confidence: list[float]) -> Scored:
    n = len(correct)
    proba = np.column_stack([1 - np.asarray(confidence), confidence])
    pred = np.array(["b"] * n, dtype=object)
    true = pd.Series(["b" if c else "a" for c in correct])
    return Scored(pd.DataFrame(index=range(n)), Path("."), "t", true, None, pred, proba, {})


def test_gallery_picks_confident_mistakes_and_fills_up():
    s = _scored([True, False, False, True, False, True], [0.6, 0.7, 0.95, 0.8, 0.55, 0.9])
    (_, right), (_, wrong) = _choose(s, 4, seed=0)
    assert wrong == [2, 1] and len(right) == 2 and set(right) <= {0, 3, 5}
    (_, right), (_, wrong) = _choose(_scored([True] * 5, [0.9] * 5), 4, seed=0)
    assert len(right) == 4 and wrong == []  # no mistakes: all right ones
    (_, right), (_, wrong) = _choose(_scored([False] * 3 + [True], [0.9, 0.8, 0.7, 0.6]), 4, seed=0)
    assert right == [3] and wrong == [0, 1, 2]  # too few right ones: more mistakes


# --------------------------------------------------------------------------------------------------- CLI
def test_report_help(cli):
    r = cli("report", "--help")
    assert r.exit_code == 0
    for opt in ("--out", "--robustness", "--examples", "--bootstrap", "--method"):
        assert opt in r.stdout


def test_report_cli_end_to_end(cli, run_dir, test_csv, tmp_path):
    out = tmp_path / "sub" / "report.html"
    # The slow parts are covered above; here the command's wiring, with them left out.
    r = cli("report", run_dir, test_csv, "--out", out, "--examples", "0", "--bootstrap", "0", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().replace("\n", "") == str(out)
    html = out.read_text(encoding="utf-8")
    assert section_ids(html)[-1] == "gallery" and html.rstrip().endswith("</html>")
    bad = cli("report", tmp_path / "nope", test_csv, "--out", tmp_path / "x.html")
    assert bad.exit_code == 2 and "run directory not found" in bad.stderr


def test_python_api_is_exported():
    assert polymodal.report is report
    assert render.__doc__ and report.__doc__ and "self-contained" in report.__doc__


# ------------------------------------------------------------------------------------- explained example figure
def _explanation(tokens: list[str], audio_present: bool):
    from polymodal.explain.attributions import Explanation, ModalityAttribution

    rng = np.random.default_rng(0)
    audio = rng.normal(size=(16, 20)) if audio_present else np.zeros((16, 20))
    attrs = {
        "image": ModalityAttribution(
            "image", "image", 0.3, rng.normal(size=(32, 32)), background=rng.random((32, 32, 3))
        ),
        "audio": ModalityAttribution("audio", "audio", 0.2 * audio_present, audio, present=audio_present),
        "text": ModalityAttribution("text", "text", 0.3, rng.normal(size=len(tokens)), tokens=tokens),
        "reading": ModalityAttribution("reading", "numeric", 0.2, np.array(0.3), total=0.3, value=1.5),
    }
    return Explanation(7, "yes", 0.8, "no", attrs, None, explained="probability of the predicted class")


@pytest.mark.parametrize("audio_present", [True, False])
@pytest.mark.parametrize("n_words", [5, 120])
def test_explanation_figure_tokens_stay_off_the_colour_bar_and_absent_modalities_get_no_panel(audio_present, n_words):
    """Checked inside the matplotlib figure (robust, no browser): every token box lies inside the text panel and
    intersects no colour bar; a modality empty in the row gets no axes at all (no blank panel)."""
    from polymodal.explain import plot_explanation

    tokens = (["supercalifragilistic", "a", "extraordinarily-long-hyphenated-token"] + ["word"] * n_words)[:n_words]
    fig = plot_explanation(_explanation(tokens, audio_present))
    fig.canvas.draw()  # positions the token boxes
    renderer = fig.canvas.get_renderer()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any(t.startswith("audio (audio)") for t in titles) == audio_present, titles
    colour_bars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    panels = [ax for ax in fig.axes if ax not in colour_bars]
    assert len(panels) == 4 + audio_present  # shares, image, (audio), text, numbers: nothing blank
    assert all(ax.has_data() or ax.texts for ax in panels)
    (text_ax,) = [ax for ax in panels if ax.get_title().startswith("text (text)")]
    panel = text_ax.get_window_extent(renderer)
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in text_ax.texts if t.get_bbox_patch()]
    assert boxes and len(boxes) <= n_words
    for box in boxes:
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1, (box, panel)
        for cb in colour_bars:
            assert not box.overlaps(cb.get_tightbbox(renderer)), (box, cb)
    # tokens do not overlap each other either
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :])
    if len(boxes) < n_words:  # the rest are counted, not drawn over the colour bar
        assert any(f"and {n_words - len(boxes)} more tokens" in t.get_text() for t in text_ax.texts)
