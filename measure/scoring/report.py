"""Write a measurement's outputs: questions.jsonl, report.json, report.md and the PNG plots.

Everything is computed first and written into a staging folder inside `out_dir`; the finished files
are then renamed into place with report.json LAST, so a failure at any step leaves the previous
outputs untouched and never a report.json that disagrees with (or lacks) the rest. report.json
therefore doubles as the "this measurement is complete" marker that `read_report` reads.

`settings` is recorded verbatim; the report.md header reads N, T, max_new_tokens and the clusterers
from it as measure.records.results.ReportSettings (the one reader of a settings block and its spellings).
`read_report` (measure.records.results) reads report.json back as the typed Report.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure   # the object API: no pyplot global state, Agg canvas for PNG
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from measure.scoring.homogeneity import CONVENTION, summarize_homogeneity
from measure.scoring.intervals import ci_label
from measure.common.io import atomic_path, to_jsonable, write_json, write_jsonl, write_text
from measure.scoring.metrics import COVERAGES, risk_coverage, signal_data, signal_names, summarize
from measure.records.records import QuestionRecord
from measure.records.results import Report, ReportSettings, report_to_json, settings_from_json

PLOTS = ("cluster_hist.png", "roc.png", "risk_coverage.png")


def _question_row(r: QuestionRecord) -> dict:
    row = to_jsonable(r)
    # JSON has no infinity; an infinite signal value is reported as missing, like NaN.
    row["signals"] = {k: (v if v is None or not isinstance(v, float) or math.isfinite(v) else None)
                      for k, v in row["signals"].items()}
    return row


def _n_per_question(r: QuestionRecord, labels: list[str]) -> int:
    key = next((k for k in labels if k in r.clusters), next(iter(r.clusters), None))
    return len(r.clusters[key]) if key is not None else 0


# ---------------------------------------------------------------- plots

def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _plot_cluster_hist(path: Path, records: list[QuestionRecord], labels: list[str], scr: dict) -> None:
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, label in zip(axes, labels):
        d = [r.n_clusters[label] for r in records]
        ax.hist(d, bins=np.arange(1, max(d) + 2) - 0.5, color="tab:blue", edgecolor="white")
        ax.set(title=f"{label} (SCR {scr[label]:.1%})", xlabel="clusters per question", ylabel="questions")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    _save(fig, path)


def _signal_axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = fig.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    colors = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "gray",
                                    "olive", "cyan")]   # 10 colours x 3 line styles: 30 signals stay distinct
    ax.set_prop_cycle(color=colors * 3, linestyle=["-"] * 10 + ["--"] * 10 + [":"] * 10)
    return fig, ax


def _plot_roc(path: Path, records: list[QuestionRecord], aurocs: dict) -> None:
    fig, ax = _signal_axes("ROC (positive = incorrect answer)", "false positive rate", "true positive rate")
    for name, value in aurocs.items():
        if value is not None:
            s, y = signal_data(records, name)
            fpr, tpr, _ = roc_curve(y.astype(int), s)
            ax.plot(fpr, tpr, label=f"{name} ({value:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def _plot_risk_coverage(path: Path, records: list[QuestionRecord], names: list[str]) -> None:
    fig, ax = _signal_axes("Risk-coverage (most confident answered first)", "coverage", "error rate")
    y_all = None
    for name in names:
        s, y = signal_data(records, name)
        if s.size:
            ax.plot(*risk_coverage(s, y), label=name)
            y_all = y if y_all is None or y.size > y_all.size else y_all
    if y_all is not None:
        ax.plot(*risk_coverage(y_all.astype(float), y_all), color="black", linewidth=1, label="oracle")
        ax.axhline(float(y_all.mean()), color="grey", linestyle=":", linewidth=1, label="random")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


# ---------------------------------------------------------------- markdown

def _f(v, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def _ci(v) -> str:
    return "" if v is None else f" [{v[0]:.3f}, {v[1]:.3f}]"


def _clusterer_desc(settings: ReportSettings, labels: list[str]) -> dict[str, str]:
    out = {}
    for label in labels:
        params = settings.clusterers.get(label)
        extra = ", ".join(f"{k}={v}" for k, v in params.items() if k != "name") if isinstance(params, dict) else ""
        out[label] = f"{label} ({extra})" if extra else label
    return out


def _homogeneity_lines(h: dict) -> list[str]:
    if not h or not (h.get("measures") or h.get("skipped")):
        return []
    ci = f"95% CI, {h['ci_method']}" if h.get("ci_method") else "no interval: bootstrap=0"
    lines = ["", f"## Continuous homogeneity per question ({CONVENTION})", "",
             f"| measure | questions | mean [{ci}] | what it is |", "|---|---|---|---|"]
    lines += [f"| {k} | {m['n']} | {_f(m['mean'])}{_ci(m['ci'])} | {m['about']} |" for k, m in h["measures"].items()]
    pub = h.get("published_scales") or {}
    if pub:
        lines += ["", "On the published (diversity) scales, means of the per-question transforms: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in pub.items())
                  + " (Vendi = 1 / inverse_vendi, EAD = 1 - ead_repetition, SBERT diversity = 1 - mean_cosine)."]
    lines += [f"- {k}: not computed ({why})" for k, why in (h.get("skipped") or {}).items()]
    return lines


def render_markdown(report: Report, labels: list[str]) -> str:
    st = report.settings
    shown = lambda v: "n/a" if v is None else v  # noqa: E731
    desc = _clusterer_desc(st, labels)
    lines = ["# Measurement report", "",
             f"SCR measured with N={shown(st.n_samples)}, T={shown(st.temperature)}, "
             f"max_new_tokens={shown(st.max_new_tokens)}; clusterers: {', '.join(desc.values()) or 'none'}.",
             f"{report.n_questions} questions, {report.n_samples} samples.", "",
             "## Homogenization per clusterer", "",
             f"| clusterer | SCR [{ci_label([report.scr_ci_method])}] | mean clusters | tax index (1 - D/N) "
             "| single-cluster questions |",
             "|---|---|---|---|---|"]
    for label in labels:
        lines.append(f"| {desc[label]} | {_f(report.scr[label])}{_ci(report.scr_ci[label])} | "
                     f"{_f(report.mean_clusters[label], 2)} | {_f(report.alignment_tax_index[label])} | "
                     f"{report.n_single_cluster[label]} |")
    lines += _homogeneity_lines(report.homogeneity)
    lines += ["", "## Correctness (greedy answer)", "",
              f"- accuracy: {_f(report.accuracy)}{_ci(report.accuracy_ci)} "
              f"({ci_label([report.accuracy_ci_method])}) over "
              f"{report.n_labelled} labelled questions ({report.n_correct} correct, "
              f"{report.n_incorrect} incorrect)",
              f"- ambiguous judgements: {report.n_ambiguous} (policy: {shown(st.ambiguous)})",
              f"- unlabelled (excluded from signal metrics): {report.n_unlabelled}", "",
              "## Uncertainty signals (higher = more uncertain; positive class = incorrect)", "",
              f"| signal | n | AUROC [{ci_label([report.auroc_ci_method])}] | Cohen's d | PRR | AURC | "
              + " | ".join(f"acc@{c:.0%}" for c in COVERAGES) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(COVERAGES)]
    for name in report.auroc:
        acc = report.accuracy_at_coverage[name]
        lines.append(f"| {name} | {report.auroc_n[name]} | {_f(report.auroc[name])}"
                     f"{_ci(report.auroc_ci[name])} | {_f(report.cohens_d[name], 2)} | "
                     f"{_f(report.prr[name])} | {_f(report.aurc[name])} | "
                     + " | ".join(_f(acc[str(c)]) for c in COVERAGES) + " |")
    n = report.auroc_single_cluster_n
    lines += ["", "## AUROC on single-cluster questions", "",
              "0.500 (constant) = the signal takes one value on those questions; – = a class is missing.", "",
              "| signal | " + " | ".join(f"{lb} (n={n[lb]['n']}, incorrect={n[lb]['n_incorrect']})"
                                        for lb in labels) + " |",
              "|---|" + "---|" * len(labels)]
    for name in report.auroc:
        cells = [_f(report.auroc_single_cluster[lb][name])
                 + (" (constant)" if name in report.single_cluster_constant[lb] else "") for lb in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Skipped signals", ""]
    lines += [f"- {k}: {v}" for k, v in report.skipped_signals.items()] or ["none"]
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" if why is None else f"- {p} not drawn: {why}" for p, why in report.plots.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(st.recorded, indent=2, default=str), "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the writer

def write_report(out_dir: Path, records: list[QuestionRecord], settings: dict, provenance: dict,
                 clusterer_labels: list[str], skipped: dict[str, str], *, n_boot: int, seed: int,
                 extra: dict | None = None, homogeneity_skipped: dict[str, str] | None = None) -> Report:
    """Write questions.jsonl, report.json, report.md and the plots into out_dir; return the report.

    `extra`: further top-level report.json keys from the caller, e.g. "timing": {"seconds_per_question":
    {key: s}} that `measure cascade` reads for its default costs; it may not replace a computed key.
    """
    out_dir = Path(out_dir)
    labels = list(clusterer_labels)
    metrics = summarize(records, labels, n_boot=n_boot, seed=seed)
    metrics["homogeneity"] = summarize_homogeneity([r.homogeneity for r in records], homogeneity_skipped or {},
                                                   n_boot=n_boot, seed=seed)
    per_q = [_n_per_question(r, labels) for r in records]
    has_roc = any(v is not None for v in metrics["auroc"].values())
    plots = {
        "cluster_hist.png": None if labels else "no clusterer",
        "roc.png": None if has_roc else "no signal has both correct and incorrect labelled questions",
        "risk_coverage.png": None if metrics["n_labelled"] and metrics["auroc"] else "no labelled questions or no signals"}
    extra = dict(extra or {})
    clash = sorted(set(extra) & ({"n_questions", "n_samples", "samples_per_question", "settings", *metrics,
                                  "skipped_signals", "plots", "provenance"}))
    if clash:
        raise ValueError(f"extra report keys would replace computed ones: {', '.join(clash)}")
    report = Report(n_questions=len(records), n_samples=int(sum(per_q)),
                    samples_per_question={"min": min(per_q), "max": max(per_q)},
                    settings=settings_from_json(to_jsonable(settings), labels), **to_jsonable(metrics),
                    skipped_signals=dict(skipped), plots=plots, timing=to_jsonable(extra.pop("timing", None)),
                    judgements=to_jsonable(extra.pop("judgements", None)), extra=to_jsonable(extra),
                    provenance=to_jsonable(provenance))

    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        write_jsonl(stage / "questions.jsonl", (_question_row(r) for r in records))
        draw = {"cluster_hist.png": lambda p: _plot_cluster_hist(p, records, labels, metrics["scr"]),
                "roc.png": lambda p: _plot_roc(p, records, metrics["auroc"]),
                "risk_coverage.png": lambda p: _plot_risk_coverage(p, records, signal_names(records))}
        for name in PLOTS:
            if report.plots[name] is None:
                draw[name](stage / name)
        write_text(stage / "report.md", render_markdown(report, labels))
        write_json(stage / "report.json", report_to_json(report))
        # report.json goes first out and last in: if a rename fails midway there is no report.json
        # claiming a complete measurement over a mix of old and new files.
        (out_dir / "report.json").unlink(missing_ok=True)
        for name in ("questions.jsonl", *PLOTS, "report.md", "report.json"):
            if (stage / name).exists():
                os.replace(stage / name, out_dir / name)
            elif (out_dir / name).exists():
                (out_dir / name).unlink()   # a stale plot from an earlier run would contradict the report
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report
