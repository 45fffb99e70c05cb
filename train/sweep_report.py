"""The report half of a sweep (train/sweep.py runs it): which variants lie on the SCR-vs-accuracy frontier,
and the outputs in checkpoints/<name>/sweeps/<stage>/: sweep.json (the summary with frontier membership),
sweep.md (one table per benchmark) and frontier.png (SCR against accuracy and against the signal's AUROC).

The summary is the SweepResult run_sweep builds (train/sweep_records.py: references = the parents, variants,
each row with per-benchmark SweepPoints). pareto, mark_frontier and render_markdown are pure; plot_frontier
and write_outputs write files.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from measure import ci_label
from measure.common.io import atomic_path, write_json, write_text
from train.sweep_records import SweepResult, SweepRow, sweep_to_json


def pareto(points: list[tuple[str, float, float]]) -> set[str]:
    """Names not dominated in (higher accuracy, lower SCR): no other point is at least as good on both
    and better on one. Points are (name, accuracy, scr)."""
    return {n for n, a, s in points
            if not any(a2 >= a and s2 <= s and (a2 > a or s2 < s) for _, a2, s2 in points)}


def _labels(rows: list[SweepRow], bench: str) -> list[str]:
    return sorted({lb for r in rows if bench in r.reports for lb in (r.reports[bench].scr or {})})


def _benches(rows: list[SweepRow]) -> list[str]:
    return sorted({b for r in rows for b in r.reports})


def mark_frontier(summary: SweepResult) -> SweepResult:
    """Each row's `frontier[benchmark]`: the clusterer labels on whose SCR-vs-accuracy frontier it lies."""
    rows = summary.rows
    frontier: list[dict[str, list[str]]] = [{} for _ in rows]
    for bench in _benches(rows):
        for label in _labels(rows, bench):
            pts = [(i, r.reports[bench].accuracy, r.reports[bench].scr[label]) for i, r in enumerate(rows)
                   if bench in r.reports and r.reports[bench].accuracy is not None
                   and (r.reports[bench].scr or {}).get(label) is not None]
            for i in sorted(pareto(pts)):
                frontier[i].setdefault(bench, []).append(label)
    marked = [dataclasses.replace(r, frontier=f) for r, f in zip(rows, frontier)]
    n_ref = len(summary.references)
    return dataclasses.replace(summary, references=marked[:n_ref], variants=marked[n_ref:])


def _num(v: Any, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _with_ci(v: Any, ci: Any) -> str:
    return _num(v) + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "")


def _ci_methods(rows: list[SweepRow]) -> str:
    """Which interval each column carries, from the reports (older reports: the bootstrap throughout)."""
    reports = [m for r in rows for m in r.reports.values()]
    parts = [f"{what}: {ci_label(getattr(m, key) for m in reports)}" for what, key in
             (("accuracy", "accuracy_ci_method"), ("AUROC", "auroc_ci_method"), ("SCR", "scr_ci_method"))]
    return "Intervals: " + "; ".join(parts) + "."


def render_markdown(summary: SweepResult) -> str:
    """sweep.md: one table per benchmark, parent first; # is the label used in frontier.png."""
    sig, rows = summary.signal, summary.rows
    lines = [f"# Sweep of `{summary.stage}` in `{summary.recipe}`", "",
             "Grid: " + "; ".join(f"`{k}` in {json.dumps(v)}" for k, v in summary.grid.items()),
             f"Variants: {len(summary.variants)} ({', '.join(f'{n} {s}' for s, n in summary.counts.items())}). "
             "SCR = share of questions whose samples form one cluster (lower = less homogenized); "
             "frontier = not dominated in (higher accuracy, lower SCR). " + _ci_methods(rows), ""]
    for bench in _benches(rows):
        labels = _labels(rows, bench)
        lines += [f"## {bench}", "", "| # | variant | status | accuracy | AUROC " + sig + " | "
                  + " | ".join(f"SCR {lb}" for lb in labels) + " | frontier |",
                  "|---" * (6 + len(labels)) + "|"]
        for i, r in enumerate(rows):
            m = r.reports.get(bench)
            cells = ([_with_ci(m.accuracy, m.accuracy_ci),
                      _with_ci((m.auroc or {}).get(sig), (m.auroc_ci or {}).get(sig))]
                     + [_with_ci(m.scr.get(lb), (m.scr_ci or {}).get(lb)) for lb in labels]) if m else \
                ["-"] * (2 + len(labels))
            lines.append(f"| {_index(summary, i)} | {r.name} | {r.status} | " + " | ".join(cells)
                         + f" | {', '.join(r.frontier.get(bench, [])) or '-'} |")
        lines.append("")
    failed = [r for r in summary.variants if r.status == "failed"]
    if failed:
        lines += ["## Failed variants", ""] + [f"- `{r.name}`: {r.error}" for r in failed] + [""]
    return "\n".join(lines)


def _index(summary: SweepResult, i: int) -> str:
    """'P' for the parent reference(s), then 1..n for the variants."""
    n_ref = len(summary.references)
    return "P" if i < n_ref and n_ref == 1 else f"P{i + 1}" if i < n_ref else str(i - n_ref + 1)


def plot_frontier(path: Path, summary: SweepResult) -> bool:
    """frontier.png: per benchmark, SCR (y, per clusterer, CI bars) against accuracy and against the
    signal's AUROC (x, CI bars); the parent is a star. Returns False when nothing was measured."""
    from matplotlib.figure import Figure  # object API: no pyplot global state
    rows = summary.rows
    benches = _benches(rows)
    if not benches:
        return False
    sig = summary.signal
    height = 4.2 * len(benches) + 0.6  # + a strip for the key of the point labels
    fig = Figure(figsize=(11, height))
    axes = fig.subplots(len(benches), 2, squeeze=False)
    for (ax_acc, ax_auc), bench in zip(axes, benches):
        labels = _labels(rows, bench)
        for c, label in enumerate(labels):
            color = f"C{c}"
            for ax, (x_of, xci_of) in ((ax_acc, (lambda m: m.accuracy, lambda m: m.accuracy_ci)),
                                       (ax_auc, (lambda m: (m.auroc or {}).get(sig),
                                                 lambda m: (m.auroc_ci or {}).get(sig)))):
                for i, r in enumerate(rows):
                    m = r.reports.get(bench)
                    if not m or x_of(m) is None or (m.scr or {}).get(label) is None:
                        continue
                    x, y = x_of(m), m.scr[label]
                    xerr, yerr = _err(x, xci_of(m)), _err(y, (m.scr_ci or {}).get(label))
                    is_ref = r.status == "reference"
                    first = not any(h.get_label() == label for h in ax.containers)
                    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="*" if is_ref else "o", color=color,
                                markersize=13 if is_ref else 6, capsize=2, alpha=0.85, label=label if first else None)
                    ax.annotate(_index(summary, i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            front = sorted((r.reports[bench].accuracy, r.reports[bench].scr[label]) for r in rows
                           if label in r.frontier.get(bench, []))
            if len(front) > 1:
                ax_acc.plot(*zip(*front), "--", color=color, linewidth=0.8)
        for ax, xlabel in ((ax_acc, "accuracy"), (ax_auc, f"AUROC of {sig} (incorrect = positive)")):
            ax.set(xlabel=xlabel, ylabel="SCR (share single-cluster)", title=f"{bench}: SCR vs {xlabel.split(' (')[0]}")
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7, title="clusterer (star = parent)", title_fontsize=7)
            else:
                ax.text(0.5, 0.5, "no measured points (metric undefined,\ne.g. no incorrect or no correct answers)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=8)
    key = "   ".join(f"{_index(summary, i)}: {r.name}" + (" (failed)" if r.status == "failed" else "")
                     for i, r in enumerate(rows))
    fig.text(0.01, 0.005, key, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.6 / height, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True


def _err(v: float, ci: Any) -> list[list[float]] | None:
    """Asymmetric error bar from a [lo, hi] CI (None: no bar)."""
    return [[max(v - ci[0], 0.0)], [max(ci[1] - v, 0.0)]] if ci else None


SWEEP_OUTPUTS = ("sweep.json", "sweep.md", "frontier.png")   # what write_outputs writes (train/outputs.py plans)


def write_outputs(out_dir: Path, summary: SweepResult) -> SweepResult:
    """frontier.png, sweep.md, then sweep.json (last); returns the summary with its `plots`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = plot_frontier(out_dir / "frontier.png", summary)
    if not drawn:
        (out_dir / "frontier.png").unlink(missing_ok=True)  # a stale plot would contradict sweep.json
    summary = dataclasses.replace(summary, plots={"frontier.png": None if drawn else "nothing measured"})
    write_text(out_dir / "sweep.md", render_markdown(summary))
    write_json(out_dir / "sweep.json", sweep_to_json(summary))
    print(f"[sweep] {out_dir / 'sweep.json'}: {summary.counts}")
    return summary
