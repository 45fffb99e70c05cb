"""The written form of a cascade (measure.analysis.cascade): risk_coverage.png, cascade.md and cascade.json,
rendered with the comparison's helpers (measure.analysis.compare_render)."""
from __future__ import annotations

from pathlib import Path

from measure.analysis.compare_render import fmt, png_bytes, to_markdown, write_images
from measure.common.io import write_json, write_text
from measure.records.cascade_result import CascadeResult, cascade_to_json


def write_cascade(result: CascadeResult, out_dir: Path) -> None:
    """cascade.md, cascade.json and risk_coverage.png of a fitted cascade (the files its OutputPlan names)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    for name, entry in [("cascade", result.cascade), *result.baselines.items()]:
        pts = sorted((p for p in entry.curve if p.accuracy is not None), key=lambda p: p.coverage)
        ax.plot([p.coverage for p in pts], [1 - p.accuracy for p in pts], marker="o",
                lw=2.5 if name == "cascade" else 1, label=name)
    ax.axhline(1 - result.base_accuracy, color="grey", ls=":", label="answer everything")
    ax.set(xlabel="coverage (evaluation split)", ylabel="risk (error rate)", title="Risk-coverage, thresholds fit on calibration")
    ax.legend(fontsize=8)
    images = {"risk_coverage.png": png_bytes(fig)}
    targets = [str(c) for c in result.targets]   # the coverages the tables show
    table = [[name, *[f"{fmt(e.at_coverage[c].accuracy)} ({fmt(e.at_coverage[c].coverage, 2)})" for c in targets],
              e.at_coverage["0.5"].relative_cost, e.aurc_grid, e.aurc, e.prr, e.auroc]
             for name, e in [("cascade", result.cascade), *result.baselines.items()]]
    split, acc = result.split, result.cost_accounting
    blocks = [("h1", "Cheapest-first cascade"), ("p", result.definition),
              ("p", f"Source: {result.source}. Signals, cheapest first by standalone cost; costs: {result.cost_source}."),
              ("table", ["stage", "signal", "work it needs", "cost alone", "cost added after the earlier stages"],
               [[j + 1, s, ", ".join(acc["work"][s]), acc["standalone"][s], acc["added_in_order"][s]]
                for j, s in enumerate(result.signals)]),
              ("p", "Work units: " + ", ".join(f"{u} = {fmt(c)}" for u, c in acc["unit_cost"].items())
                    + f"; every signal, each unit once: {fmt(acc['every_signal'])} (the denominator of relative cost)."),
              ("p", f"Split: {split['mode']}, seed {split['seed']}; calibration/evaluation sizes "
                    + "; ".join(f"{f['n_calibration']}/{f['n_evaluation']}" for f in split["folds"])
                    + f"; {result.n_used} of {result.n_questions} questions used (excluded: "
                    + ", ".join(f"{k} {v}" for k, v in result.excluded.items()) + ")."),
              ("table", ["method", *[f"accuracy @{float(c):.0%} (realized coverage)" for c in targets],
                         "relative cost @50%", "AURC (grid)", "AURC", "PRR", "AUROC"], table),
              ("table", ["target coverage", *result.signals],
               [[c, *["; ".join(fmt(th[s]) if th[s] is not None else "off" for th in result.cascade.at_coverage[c].thresholds)
                      for s in result.signals]] for c in targets]),
              ("img", "risk_coverage.png")]
    if result.notes:
        blocks += [("h2", "Notes"), *[("p", "- " + n) for n in result.notes]]
    write_images(out_dir, images)
    write_json(out_dir / "cascade.json", cascade_to_json(result))
    write_text(out_dir / "cascade.md", to_markdown(blocks))
