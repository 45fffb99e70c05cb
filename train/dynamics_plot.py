"""One picture of homogenization across a chain: <chain>/dynamics.png, and a section of compare.html.

Each measure of the probe (<stage>/dynamics.jsonl: SCR, pairwise agreement and mean clusters per clusterer,
the continuous homogeneity measures (mean cosine, 1/Vendi, 1 - EAD: one panel), greedy token entropy,
accuracy; train/dynamics.py) against ONE global training step: a stage starts where
its parent ended (base -> SFT -> DPO on one axis; a stage branching off an earlier one starts at that
one's end), stage boundaries are dotted lines with the stage's name on top. At each stage's end, its full
measurement (<stage>/measure/<benchmark>/report.json, the probe's benchmark, all its questions) is an
open point with its interval where the report has one (SCR, accuracy: Clopper-Pearson; pairwise agreement
and the continuous measures: the report's bootstrap interval). The reward margin
each preference stage logged (TRL's rewards/margins, from its stage.json log history) is drawn on a
second axis of the top panel. A stage its stop_when rule ended has a red dashed line at that step. Lines
are per stage: nothing is interpolated across a boundary.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

from measure import DYNAMICS_FILE, ProbeRecord, Report, homogeneity_key, read_probe_records, read_report
from measure.common.io import atomic_path, write_text
from train import checkpoint as ckpt
from train.dynamics import probe_benchmark
from train.layout import COMPARE_SUBDIR
from train.measure_stage import measure_dir
from train.recipe import Recipe

PICTURE = "dynamics.png"
FAMILIES = {"scr": "SCR", "pairwise_agreement": "pairwise agreement", "mean_clusters": "mean clusters",
            "continuous": "continuous\nhomogeneity",
            "greedy_entropy_mean": "greedy token entropy (nats)", "accuracy": "accuracy (greedy)"}
# the continuous measures without a clusterer (measure.scoring.homogeneity; higher = more homogeneous) share one
# panel, told apart by colour (colours the clusterers take last) and line style (for grey print)
CONTINUOUS = {"mean_cosine": ("-", "mean cosine", "tab:purple"), "inverse_vendi": ("--", "1 / Vendi", "tab:brown"),
              "ead_repetition": (":", "1 - EAD", "tab:olive")}
COLORS = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "gray", "olive", "cyan")]
MARKER = ("<!-- dynamics: train/dynamics_plot.py -->", "<!-- /dynamics -->")


@dataclass(frozen=True)
class StageSpan:
    stage: str
    start: int                          # the global step the stage starts at (its parent's end)
    steps: int                          # optimizer steps it trained
    records: list[ProbeRecord]
    margins: list[tuple[int, float]]    # (step in the stage, logged rewards/margins)
    end: Report | None                  # the stage's full measurement on the probe's benchmark

    @property
    def stop(self) -> int:
        return self.start + self.steps


def probe_benchmark_name(recipe: Recipe) -> str | None:
    if recipe.during_training is not None:
        return probe_benchmark(recipe).name
    return recipe.measure.benchmarks[0].name if recipe.measure.benchmarks else None


def chain_spans(recipe: Recipe) -> list[StageSpan]:
    """Every stage of the chain placed on the global step axis, with what it measured and logged."""
    bench = probe_benchmark_name(recipe)
    spans: dict[str, StageSpan] = {}
    for stage in recipe.stage_names:
        directory = ckpt.stage_dir(recipe, stage)
        records = read_probe_records(directory / DYNAMICS_FILE)
        metrics = ckpt.read_manifest(directory).train_metrics if ckpt.is_finished(recipe, stage) else {}
        steps = metrics.get("global_step") or max((r.step for r in records), default=0)
        parent = recipe.parent_of(stage)
        start = spans[parent].stop if parent in spans else 0
        margins = [(e["step"], e["rewards/margins"]) for e in metrics.get("log_history") or []
                   if isinstance(e.get("rewards/margins"), (int, float)) and isinstance(e.get("step"), int)]
        report = measure_dir(recipe, stage, bench) / "report.json" if bench else None
        spans[stage] = StageSpan(stage, start, int(steps), records, margins,
                                 read_report(report.parent) if report and report.exists() else None)
    return list(spans.values())


def series(spans: list[StageSpan], family: str) -> list[str]:
    """The measure keys of one family in the records ("scr/exact", ..., or "greedy_entropy_mean")."""
    keys = {k for s in spans for r in s.records for k in r.measures
            if (k in CONTINUOUS if family == "continuous" else k == family or k.startswith(family + "/"))}
    return sorted(keys, key=lambda k: (list(CONTINUOUS).index(k) if k in CONTINUOUS else -1, k))


def end_point(report: Report | None, key: str) -> tuple[float | None, list[float] | None]:
    """(value, [lo, hi] or None) of a measure key in a stage's report, when the report has that metric (the
    continuous measures and pairwise agreement: the report's homogeneity block, mean and bootstrap interval)."""
    if report is None:
        return None, None
    family, _, clusterer = key.partition("/")
    continuous = {homogeneity_key(name): entry for name, entry in
                  ((report.homogeneity or {}).get("measures") or {}).items()}
    if key in continuous:
        ci = continuous[key].get("ci")
        return continuous[key].get("mean"), (list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None)
    value, ci = getattr(report, family, None), getattr(report, family + "_ci", None)
    if clusterer:
        value = value.get(clusterer) if isinstance(value, dict) else None
        ci = ci.get(clusterer) if isinstance(ci, dict) else None
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2
    return (value if isinstance(value, (int, float)) else None), (list(ci) if ok else None)


def draw(spans: list[StageSpan]):
    """The figure (matplotlib's object API; None when no stage has a dynamics record)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory
    families = [f for f in FAMILIES if series(spans, f)]
    if not families:
        return None
    clusterers = sorted({k.partition("/")[2] for f in families for k in series(spans, f)} - {""})
    color = {c: COLORS[i % len(COLORS)] for i, c in enumerate(clusterers)}
    fig = Figure(figsize=(9.5, 1.9 * len(families) + 1.4), layout="constrained")
    axes = fig.subplots(len(families), 1, sharex=True, squeeze=False).ravel()
    for ax, family in zip(axes, families):
        for key in series(spans, family):
            style, _, c = CONTINUOUS.get(key, ("-", None, color.get(key.partition("/")[2], "black")))
            for span in spans:
                pts = [(span.start + r.step, r.measures[key]) for r in span.records if r.measures.get(key) is not None]
                if pts:
                    ax.plot(*zip(*pts), color=c, marker=".", markersize=4, linewidth=1.2, linestyle=style)
                value, ci = end_point(span.end, key)
                if value is not None:
                    err = [[value - ci[0]], [ci[1] - value]] if ci else None
                    ax.errorbar([span.stop], [value], yerr=err, fmt="o", color=c, mfc="white", capsize=3)
        ax.set_ylabel(FAMILIES[family], fontsize=9)
        ax.yaxis.get_major_formatter().set_useOffset(False)
        for span in spans:
            ax.axvline(span.start, color="grey", linestyle=":", linewidth=0.8)
    top = axes[0]
    on_top = blended_transform_factory(top.transData, top.transAxes)
    for span in spans:
        top.text(span.start + span.steps / 2, 1.02, span.stage, transform=on_top, ha="center", va="bottom", fontsize=8)
    handles = [Line2D([], [], color=color[c], marker=".", label=f"probe, {c}") for c in clusterers]
    if any(not k.partition("/")[2] and k not in CONTINUOUS for f in families for k in series(spans, f)):
        handles.append(Line2D([], [], color="black", marker=".", label="probe (no clusterer)"))
    handles += [Line2D([], [], color=CONTINUOUS[k][2], marker=".", linestyle=CONTINUOUS[k][0],
                       label=f"probe, {CONTINUOUS[k][1]} (higher = more alike)")
                for k in series(spans, "continuous")]
    handles.append(Line2D([], [], color="grey", marker="o", mfc="white", linestyle="",
                          label="stage's full measurement (95% CI)"))
    stops = [span.start + r.step for span in spans for r in span.records if r.stopped]
    for ax in axes:   # a stage ended by the callback's stop_when rule: where it stopped
        for x in stops:
            ax.axvline(x, color="red", linestyle="--", linewidth=1)
    if stops:
        handles.append(Line2D([], [], color="red", linestyle="--", label="stopped by a stop_when rule"))
    if any(span.margins for span in spans):
        twin = top.twinx()
        for span in spans:
            if span.margins:
                twin.plot(*zip(*[(span.start + s, m) for s, m in span.margins]), color="black", alpha=0.45,
                          linestyle="--", linewidth=1)
        twin.set_ylabel("reward margin", fontsize=8)
        handles.append(Line2D([], [], color="black", alpha=0.45, linestyle="--", label="logged reward margin (right)"))
    axes[-1].set_xlabel("global training step (a stage starts where its parent ended)")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    fig.suptitle("Homogenization during training (probe set)", fontsize=10)
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def html_section(data: bytes) -> str:
    image = base64.b64encode(data).decode("ascii")
    about = (f"The probe set measured while each stage trained (each stage's {DYNAMICS_FILE}), against one global "
             "training step; dotted lines: stage boundaries; open points: each stage's full measurement with its "
             "interval; dashed (right axis): the reward margin a preference stage logged.")
    return (f"{MARKER[0]}<h2>Homogenization during training</h2><p>{html.escape(about)}</p>"
            f"<img alt='{PICTURE}' src='data:image/png;base64,{image}'>{MARKER[1]}")


def add_to_html(path: Path, data: bytes) -> None:
    """Put the section into a compare.html before </body>, replacing the one an earlier run put there."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(re.escape(MARKER[0]) + ".*?" + re.escape(MARKER[1]), "", text, flags=re.S)
    write_text(path, text.replace("</body>", html_section(data) + "\n</body>", 1))


def write_chain_picture(recipe: Recipe) -> Path | None:
    """<chain>/dynamics.png and its section in every compare.html of the chain; None when no stage has records."""
    fig = draw(chain_spans(recipe))
    if fig is None:
        return None
    data = png_bytes(fig)
    out = ckpt.chain_dir(recipe) / PICTURE
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    for page in sorted((ckpt.chain_dir(recipe) / COMPARE_SUBDIR).glob("**/compare.html")):
        add_to_html(page, data)
    return out
