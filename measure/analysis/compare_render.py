"""Rendering of a stage comparison: one block list -> compare.md and a self-contained compare.html, plus
the PNG plots (SCR by stage, cluster-count distributions, ROC per stage, sensitivity: vs N, threshold and
answer length).

The Comparison (measure.records.results) comes from measure.analysis.compare.compare_stages, which does every test and the verdict; the only
numbers made here are the ROC curves (and their AUROC legends) drawn from the stages' saved signals. fmt,
to_markdown, to_html, png_bytes and write_images are shared with measure.analysis.cascade.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from measure.scoring.intervals import ci_label
from measure.common.io import atomic_path, write_json, write_text
from measure.analysis.measured_run import MeasuredRun
from measure.scoring.metrics import auroc
from measure.records.results import read_report
from measure.records.comparison import Comparison, comparison_to_json
from measure.scoring.homogeneity import CONVENTION
from measure.scoring.signals import SIGNALS, SignalKey


ROC_SIGNALS = ("greedy_entropy_mean", "response_length", "semantic_entropy", "n_clusters")  # per-clusterer: the first


def roc_keys(clusterer: str) -> list[str]:
    """The signal keys drawn in roc.png, a per-clusterer signal under `clusterer`."""
    keys = (SignalKey(n, clusterer if SIGNALS[n].per_clusterer else None) for n in ROC_SIGNALS)
    return list(dict.fromkeys(str(k) for k in keys))


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.{digits}g}" if v != 0 and abs(v) < 0.01 else f"{v:.{digits}f}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"[{fmt(v[0], digits)}, {fmt(v[1], digits)}]"
    return str(v)


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}\n")
        elif kind == "h2":
            out.append(f"## {rest[0]}\n")
        elif kind == "p":
            out.append(f"{rest[0]}\n")
        elif kind == "img":
            out.append(f"![{rest[0]}]({rest[0]})\n")
        elif kind == "table":
            head, rows = rest
            out.append("\n".join(["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
                                 + ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]) + "\n")
    return "\n".join(out)


def to_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """Self-contained: every PNG is inlined as a base64 data URI."""
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
           "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}img{max-width:100%}</style></head><body>"]
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "img":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f"<img alt='{e(rest[0])}' src='data:image/png;base64,{data}'>")
        elif kind == "table":
            head, rows = rest
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{e(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
                       + "</table>")
    return "\n".join(out + ["</body></html>\n"])


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_images(out_dir: Path, images: dict[str, bytes]) -> None:
    for name, data in images.items():
        with atomic_path(Path(out_dir) / name) as tmp:
            tmp.write_bytes(data)


def _grid(n: int, width: float = 4.0, height: float = 3.0):
    from matplotlib.figure import Figure   # object API: no pyplot global state
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _scr_ci_label(result: Comparison) -> str:
    return ci_label(st.clusterers[c].scr_ci_method for st in result.per_stage.values() for c in result.clusterers)


IMAGES = ("scr_by_stage.png", "cluster_counts.png", "roc.png", "sensitivity.png")   # every image _plots may draw


def _plots(result: Comparison, stages: list[MeasuredRun]) -> dict[str, bytes]:
    from sklearn.metrics import roc_curve
    labels, cls, per = result.stages, result.clusterers, result.per_stage
    images = {}
    fig, (ax,) = _grid(1, 6, 4)
    x = np.arange(len(labels))
    for i, c in enumerate(cls):
        y = np.array([per[s].clusterers[c].scr for s in labels])
        cis = [per[s].clusterers[c].scr_ci or [v, v] for s, v in zip(labels, y)]
        err = np.array([[v - lo for v, (lo, _) in zip(y, cis)], [hi - v for v, (_, hi) in zip(y, cis)]])
        ax.errorbar(x + 0.04 * (i - len(cls) / 2), y, yerr=np.clip(err, 0, None), marker="o", capsize=3, label=c)
    ax.set(xticks=x, xticklabels=labels, ylabel="single-cluster rate", title=f"SCR by stage ({_scr_ci_label(result)})")
    ax.legend()
    images["scr_by_stage.png"] = png_bytes(fig)

    fig, axes = _grid(len(cls))
    for ax, c in zip(axes, cls):
        for s in labels:
            hist = per[s].clusterers[c].count_hist
            ks = [int(k) for k in hist]
            ax.plot(ks, [hist[str(k)] / result.n_questions for k in ks], marker="o", label=s)
        ax.set(title=c, xlabel="clusters per question", ylabel="share of questions")
        ax.legend(fontsize=8)
    images["cluster_counts.png"] = png_bytes(fig)

    fig, axes = _grid(len(stages))
    for ax, st in zip(axes, stages):
        for name in roc_keys(cls[0]):
            rows = [(r.signals.get(name), not r.label) for r in st.records if r.label is not None]
            rows = [(v, y) for v, y in rows if isinstance(v, (int, float)) and math.isfinite(v)]
            ys = [y for _, y in rows]
            if rows and any(ys) and not all(ys):
                fpr, tpr, _ = roc_curve(ys, [v for v, _ in rows])
                ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc([v for v, _ in rows], ys):.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        ax.set(title=f"{st.label}: ROC (positive = incorrect)", xlabel="FPR", ylabel="TPR")
        if ax.get_legend_handles_labels()[0]:   # a stage without both classes has no curve to name
            ax.legend(fontsize=7)
    images["roc.png"] = png_bytes(fig)

    sens = result.sensitivity
    panels = [("n", c, v.stages) for c, v in sens.n_samples.items()]
    panels += [("threshold", c, v.stages) for c, v in sens.threshold.items() if v.stages]
    panels += [("length", c, v.stages) for c, v in sens.length.items()]
    if panels:
        fig, axes = _grid(len(panels))
        titles = {"n": ("SCR vs N samples", "k", "SCR"), "threshold": ("SCR vs threshold", "threshold", "SCR"),
                  "length": ("vs answer length", "tokens", "SCR (solid), agreement (dashed)")}
        for ax, (kind, c, data) in zip(axes, panels):
            key = "threshold" if kind == "threshold" else "k"
            for s, pts in data.items():
                line, = ax.plot([getattr(p, key) for p in pts], [p.scr for p in pts], marker="o", label=s)
                if kind == "length":
                    ax.plot([p.k for p in pts], [math.nan if p.agreement is None else p.agreement for p in pts],
                            ls="--", color=line.get_color())
            ax.set(title=f"{c}: {titles[kind][0]}", xlabel=titles[kind][1], ylabel=titles[kind][2])
            ax.legend(fontsize=8)
        images["sensitivity.png"] = png_bytes(fig)
    return images


def power_line(result: Comparison) -> str:
    """What the design could have detected: the smallest SCR rise each test sees with 80% power."""
    rises = [t.min_detectable_rise for t in result.transitions if t.min_detectable_rise is not None]
    if not result.transitions or "min_detectable_rise" in result.transitions[0].absent:
        return "Power: not recorded (a comparison written before it was computed)."
    span = "no rise at all" if not rises else (
        f"an SCR rise of {fmt(min(rises))}" if min(rises) == max(rises) else
        f"SCR rises of {fmt(min(rises))} to {fmt(max(rises))} (by transition and clusterer)")
    return (f"Power: with {result.n_questions} questions, these tests detect {span} with 80% power (exact McNemar "
            f"power by enumeration at alpha / {result.holm.family_size}, the strictest Holm step, given each "
            "transition's observed single -> multi rate b / n); a smaller rise can go unseen, so 'not significant' "
            "does not mean 'no homogenization'. Per test: the 'detectable SCR rise' column.")


def _measure_blocks(result: Comparison) -> list[tuple]:
    """The continuous homogeneity measures: per-stage means and the paired tests (measure.analysis.measure_tests)."""
    rows = result.measure_transitions
    if not rows:
        return []
    keys = list(dict.fromkeys(r.measure for r in rows))
    per = result.per_stage
    return [("h2", f"Continuous homogeneity measures ({CONVENTION})"),
            ("table", ["stage", *keys], [[s, *[per[s].homogeneity_mean.get(k) for k in keys]] for s in result.stages]),
            ("p", "Paired per question (later - earlier): Wilcoxon signed-rank (zeros dropped; method column), "
                  "Holm-adjusted in the family above; a paired bootstrap interval of the mean difference "
                  "(questions resampled, pairs kept together). Definitions: measure/scoring/homogeneity.py."),
            ("table", ["transition", "measure", "n", "from", "to", "mean diff",
                       ci_label(r.mean_diff_ci_method for r in rows) if any(r.mean_diff_ci for r in rows)
                       else "interval (none: bootstrap=0)", "Wilcoxon p", "method", "Holm p", "rank-biserial"],
             [[f"{r.from_} -> {r.to}", r.measure, r.n, r.mean_from, r.mean_to, r.mean_diff, r.mean_diff_ci,
               r.wilcoxon_p, r.wilcoxon_method or "-", r.wilcoxon_p_holm, r.rank_biserial] for r in rows])]


def _blocks(result: Comparison) -> list[tuple]:
    labels, cls, per = result.stages, result.clusterers, result.per_stage
    v = result.verdict
    pairs = result.settings.get("pairs")   # a comparison of pairs of runs (measure.analysis.compare)
    order = "compared in pairs: " + ", ".join(f"{a} -> {b}" for a, b in pairs) if pairs else " -> ".join(labels)
    b: list[tuple] = [("h1", f"Stage comparison{': ' + result.benchmark if result.benchmark else ''}"),
                      ("p", f"{result.n_questions} questions matched by id across {len(labels)} stages: "
                            f"{order}. Clusterers: {', '.join(cls)}."),
                      ("h2", "Verdict"), ("p", v.text), *([("p", v.measures_text)] if v.measures_text else []),
                      ("p", power_line(result)), ("p", v.rule), *([("p", v.measures_rule)] if v.measures_rule else []),
                      ("table", ["transition", "significant rise under", "not under", "majority"],
                       [[f"{p.from_} -> {p.to}", ", ".join(p.agree) or "none", ", ".join(p.disagree) or "none",
                         p.majority] for p in v.per_transition]),
                      ("h2", "Stages"),
                      ("table", ["stage", "questions", "N", "accuracy", "labelled", "ambiguous", "token entropy (mean)"],
                       [[s, per[s].n_questions, per[s].n_samples, per[s].accuracy, per[s].n_labelled,
                         per[s].n_ambiguous, per[s].token_entropy_mean] for s in labels]),
                      ("table", ["stage", *[f"SCR {c} [{_scr_ci_label(result)}]" for c in cls],
                                 *[f"mean clusters {c}" for c in cls]],
                       [[s, *[f"{fmt(per[s].clusterers[c].scr)} {fmt(per[s].clusterers[c].scr_ci)}" for c in cls],
                         *[per[s].clusterers[c].mean_clusters for c in cls]] for s in labels]),
                      ("img", "scr_by_stage.png"), ("img", "cluster_counts.png"),
                      ("h2", "Paired tests within each listed pair of runs" if pairs else
                             "Paired tests between consecutive stages"),
                      ("p", f"Holm correction over {result.holm.family_size} tests ({result.holm.family}). "
                            "b = single -> multi, c = multi -> single; rank-biserial > 0 = more clusters later. "
                            "Wilcoxon: zero differences dropped (zero_method='wilcox'), null distribution chosen from "
                            "the number of non-zero differences (method column)."),
                      ("table", ["transition", "clusterer", "SCR diff", ci_label(t.scr_diff_ci_method for t in result.transitions),
                                 "b", "c", "McNemar p", "Holm p", "detectable SCR rise (80% power)", "mean clusters diff",
                                 "Wilcoxon p", "Wilcoxon method", "Holm p", "rank-biserial"],
                       [[f"{t.from_} -> {t.to}", t.clusterer, t.scr_diff, t.scr_diff_ci,
                         t.b_single_to_multi, t.c_multi_to_single, t.mcnemar_p, t.mcnemar_p_holm,
                         ">= " + fmt(t.min_detectable_rise) if t.min_detectable_rise is not None else "none <= 1",
                         t.mean_clusters_diff, t.wilcoxon_p, t.wilcoxon_method or "-",
                         t.wilcoxon_p_holm, t.rank_biserial]
                        for t in result.transitions]),
                      *_measure_blocks(result),
                      ("h2", "Clusterer agreement"),
                      ("table", ["stage", "pair", "kappa (single-cluster)", "agreement", "single a / b / both", "mean ARI"],
                       [[s, f"{a.a} vs {a.b}", a.kappa if a.kappa is not None else a.kappa_note,
                         a.percent_agreement, f"{a.n_single_a} / {a.n_single_b} / {a.n_single_both}",
                         a.ari_mean] for s in labels for a in result.agreement[s]]),
                      ("h2", "AUROC per signal (positive = incorrect; from each report.json)")]
    signals = list(dict.fromkeys(k for s in labels for k in per[s].auroc))
    b.append(("table", ["signal", *labels], [[n, *[per[s].auroc.get(n) for s in labels]] for n in signals]))
    b.append(("img", "roc.png"))
    b.append(("h2", "Sensitivity (from saved samples, no re-sampling)"))
    for c, val in result.sensitivity.n_samples.items():
        ks = sorted({p.k for pts in val.stages.values() for p in pts})
        b.append(("p", f"SCR vs number of samples, {c}{' (approximate: first k of the full clustering)' if val.approximate else ''}"))
        b.append(("table", ["stage", *[f"k={k}" for k in ks]],
                  [[s, *[next((p.scr for p in pts if p.k == k), None) for k in ks]] for s, pts in val.stages.items()]))
    for name, val in result.sensitivity.threshold.items():
        b.append(("p", f"SCR vs {name} threshold"))
        b.append(("table", ["stage", *[f"t={t}" for t in val.thresholds]],
                  [[s, *[p.scr for p in pts]] for s, pts in val.stages.items()]))
    for c, val in result.sensitivity.length.items():
        ks = sorted({p.k for pts in val.stages.values() for p in pts})
        b.append(("p", f"SCR / mean pairwise agreement vs answer length k (the first k generated tokens of every "
                       f"sample, re-clustered), {c}"))
        b.append(("table", ["stage", *[f"k={k}" for k in ks]],
                  [[s, *[next((f"{fmt(p.scr)} / {fmt(p.agreement)}" for p in pts if p.k == k), None) for k in ks]]
                   for s, pts in val.stages.items()]))
    for s, src in result.sensitivity.length_sources.items():
        b.append(("p", f"Prefix texts of {s}: tokenizer {src.tokenizer}, EOS ids {src.eos_ids}, stop {src.stop}, "
                       f"max_new_tokens {src.max_new_tokens}; {src.texts_checked} stored texts reproduced exactly "
                       f"from their token ids. Rule: {src.rule}."))
    b.append(("img", "sensitivity.png"))
    if result.notes:
        b += [("h2", "Notes"), *[("p", "- " + n) for n in result.notes]]
    return b


def render(result: Comparison, stages: list[MeasuredRun], out_dir: Path) -> None:
    """Everything is computed before the first write; report files are written last."""
    images = _plots(result, stages)
    blocks = [blk for blk in _blocks(result) if blk[0] != "img" or blk[1] in images]
    write_images(out_dir, images)
    write_json(out_dir / "compare.json", comparison_to_json(result))
    write_text(out_dir / "compare.md", to_markdown(blocks))
    write_text(out_dir / "compare.html", to_html(blocks, images, "alignment-tax stage comparison"))


def stage_table(compare: Comparison, benchmark: str) -> str:
    """The end-of-chain summary: SCR per stage and clusterer (95% CI, its method named), accuracy, the verdict."""
    labels = compare.clusterers
    method = _scr_ci_label(compare)
    s = read_report(compare.per_stage[compare.stages[0]].path).settings
    thresholds = ", ".join(f"{c} {s.clusterers[c]['threshold']}" for c in labels
                           if isinstance(s.clusterers.get(c), dict) and "threshold" in s.clusterers[c])
    lines = [f"\n{benchmark}: SCR by stage ({method}), N={s.n_samples}, T={s.temperature}, max_new_tokens={s.max_new_tokens}"
             + (f", thresholds: {thresholds}" if thresholds else ""),
             f"{'stage':<8} {'accuracy':>8}  " + "  ".join(f"{c:>22}" for c in labels)]
    for name in compare.stages:
        st = compare.per_stage[name]
        cells = [f"{st.clusterers[c].scr:.3f} [{st.clusterers[c].scr_ci[0]:.3f}, "
                 f"{st.clusterers[c].scr_ci[1]:.3f}]" for c in labels]
        acc = "-" if st.accuracy is None else f"{st.accuracy:.3f}"
        lines.append(f"{name:<8} {acc:>8}  " + "  ".join(f"{x:>22}" for x in cells))
    rises = [t.min_detectable_rise for t in compare.transitions if t.min_detectable_rise is not None]
    if rises:   # what the design could have detected (measure.analysis.power), beside what it did
        span = fmt(min(rises)) if min(rises) == max(rises) else f"{fmt(min(rises))}..{fmt(max(rises))}"
        lines.append(compare.verdict.text + f" Detectable with 80% power: SCR rises >= {span} ({compare.n_questions} questions).")
    else:
        lines.append(compare.verdict.text)
    if compare.verdict.measures_text:
        lines.append(compare.verdict.measures_text)
    lines.append(f"full comparison: {compare.out_dir}/compare.html")
    return "\n".join(lines)
