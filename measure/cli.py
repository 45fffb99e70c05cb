"""`python -m measure <command> key=value ...` -- the measurement CLI. Subcommands and nothing else.

    python -m measure run model=<dir | adapter dir | hub id | file.gguf | pkg:<package>> benchmark=gsm8k
                          [benchmark_path=...] [limit=50] [judge=...] out=<dir> [<measure setting>=...]
    accelerate launch --num_processes 8 -m measure run ...      (questions sharded across processes)
    python -m measure score samples=<samples.jsonl> out=<dir> [clusterers=[exact,jaccard]] [judge=short_qa]
    python -m measure compare runs=[dirA,dirB] labels=[A,B] out=<dir> [lengths=[5,10,20]]
    python -m measure compare <dir with runs.json, e.g. checkpoints/<name>> [benchmark=...] [out=...]
    python -m measure cascade <measure dir> [signals=[...]] [costs=[...]] [cv_folds=5]
    python -m measure plan scr_from=0.015 scr_to=0.04 [power=0.8] [alpha=0.05] [discordant_down=0]

Measurement settings (n_samples, temperature, top_p, max_new_tokens, rows_per_call, batch_size, stop, backend,
vllm_logprobs, decoder, clusterers, signals, embedding_model, nli_model, judge_margin, ambiguous, bootstrap,
seed: `python -m measure run --help` lists them with their defaults) are plain keys for `run model=...` and
`score` (a recipe's stages: `python -m train.measure_stage recipe=... stage=...`, with `measure.<key>` overrides).
`python -m measure <command> --help` prints a command's options.

Batching (measure/sampling/batching.py): a decode call holds rows_per_call rows = prompts x (greedy + N); unset, it is
auto (176 on a CPU; on a CUDA GPU derived from its total memory and the model's size). batch_size = questions
per batch (the resume cache and sharding unit; default one decode call's prompts); an explicit batch_size
keeps that unit and decodes its batch in calls of the rows budget. The report records settings.decode_plan.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from measure.common.cli_args import HELP_WORDS, parse_cli
from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.records.results import Report
from measure.common.values import as_int, as_number, as_seed


def _settings(raw: dict[str, Any], where: str):
    from measure.scoring.config import parse_measure_settings
    return parse_measure_settings(raw, where)


def print_summary(report: Report, out: Path) -> None:
    """Print a report's headline numbers (on the main process only)."""
    from accelerate import PartialState
    if not PartialState().is_main_process:  # sharded runs: every rank has the report, one prints it
        return
    s = report.settings
    print(f"{out}/report.json: {report.n_questions} questions, N={s.n_samples}, T={s.temperature}, "
          f"max_new_tokens={s.max_new_tokens}, judge {s.judge_name}")
    for label, value in report.scr.items():
        lo, hi = report.scr_ci.get(label) or (None, None)
        ci = f" [{lo:.3f}, {hi:.3f}] ({report.scr_ci_method or 'bootstrap'} 95% CI)" if lo is not None else ""
        print(f"  SCR[{label}] = {value:.3f}{ci}   mean clusters {report.mean_clusters[label]:.2f}")
    acc = report.accuracy
    print(f"  accuracy {acc:.3f} over {report.n_labelled} labelled ({report.n_ambiguous} ambiguous)"
          if acc is not None else f"  no labelled questions ({report.n_ambiguous} ambiguous)")


@dataclass(frozen=True)
class RunOptions:
    model: str | None = field(default=None, metadata={"help": "dir, adapter dir, hub id, .gguf file or pkg:<package>"})
    benchmark: str | None = field(default=None, metadata={"help": "benchmark name (gsm8k, truthfulqa, jsonl, ...)"})
    benchmark_path: str | None = field(default=None, metadata={"help": "the benchmark's file; default: its usual place"})
    limit: int | None = field(default=None, metadata={"help": "measure at most this many questions"})
    split: str | None = field(default=None, metadata={"help": "the benchmark's split"})
    judge: str | None = field(default=None, metadata={"help": "correctness judge; default: the benchmark's own "
                                                      "(e.g. truthfulqa_overlap: the paper's word-overlap judge)"})
    out: str | None = field(default=None, metadata={"help": "output dir (report.json, samples.jsonl)"})
    prompt_format: str = field(default="chat", metadata={"help": "chat (the model's chat template), qa (few-shot Q/A) "
                                                                "or hh (Anthropic HH turns)"})
    overwrite: bool = field(default=False, metadata={"help": "measure again over a finished report"})


def cmd_run(opts: dict[str, Any], args: dict[str, Any]) -> None:
    """`python -m measure run model=... benchmark=... out=... [<measure setting>=...]`: sample a model on one
    benchmark and score it (report.json, samples.jsonl). Sharded under `accelerate launch`. The measure
    settings below are plain keys (n_samples=5 temperature=0.7 backend=vllm ...)."""
    from measure import pipeline
    from measure.common.io import provenance
    if "recipe" in args:  # the library knows no recipes; the application measures its stages
        raise UsageError("`measure run recipe=...` is `python -m train.measure_stage recipe=... stage=...` (or "
                         "`accelerate launch -m train.measure_stage ...`); `measure run` takes model=... benchmark=... out=...")
    for key in ("model", "benchmark", "out"):
        if not opts[key]:
            raise UsageError(f"missing {key}=...; `measure run` takes model=... benchmark=... out=... (a recipe's stage: "
                             "python -m train.measure_stage recipe=... stage=...)")
    from measure.sampling.prompts import PROMPT_FORMATS  # (imports torch: not at the CLI's top)
    if opts["prompt_format"] not in PROMPT_FORMATS:
        raise UsageError(f"prompt_format: unknown {opts['prompt_format']!r}{suggest(str(opts['prompt_format']), PROMPT_FORMATS)}")
    settings = _settings({**args, "benchmarks": [{"name": opts["benchmark"], "path": opts["benchmark_path"],
                                                  "limit": opts["limit"], "split": opts["split"],
                                                  "judge": opts["judge"]}]}, "run")
    from measure.sampling.model_source import check_reference
    check_reference(str(opts["model"]))  # after the settings, before anything is loaded or written
    out = Path(opts["out"])
    report = pipeline.measure_model(str(opts["model"]), settings.benchmarks[0], settings, out,
                                    prompt_format=opts["prompt_format"], overwrite=opts["overwrite"],
                                    provenance=provenance(seed=settings.seed))
    print_summary(report, out)


@dataclass(frozen=True)
class ScoreOptions:
    samples: str | None = field(default=None, metadata={"help": "a samples.jsonl (from measure run, or your own)"})
    out: str | None = field(default=None, metadata={"help": "output dir (report.json)"})
    judge: str | None = field(default=None, metadata={"help": "correctness judge; default: the recorded one, else "
                                                      "guessed from the rows"})
    overwrite: bool = field(default=False, metadata={"help": "score again over a finished report"})


def cmd_score(opts: dict[str, Any], args: dict[str, Any]) -> None:
    """`python -m measure score samples=<samples.jsonl> out=<dir> [<measure setting>=...]`: score existing
    samples (clusterers, signals, judge, metrics) without a model."""
    from measure import pipeline
    from measure.scoring.correctness import JUDGES
    if not opts["samples"] or not opts["out"]:
        raise UsageError("`measure score` needs samples=<samples.jsonl> and out=<dir>")
    if opts["judge"] is not None and opts["judge"] not in JUDGES:
        raise UsageError(f"judge: unknown {opts['judge']!r}{suggest(str(opts['judge']), JUDGES)}")
    settings = _settings(args, "score")
    report = pipeline.score_file(Path(opts["samples"]), Path(opts["out"]), settings, judge=opts["judge"],
                                 overwrite=opts["overwrite"])
    print_summary(report, Path(opts["out"]))


@dataclass(frozen=True)
class CompareOptions:
    runs: list | None = field(default=None, metadata={"help": "measured run dirs to compare, in order"})
    labels: list | None = field(default=None, metadata={"help": "a label per run; default: the dir names"})
    out: str | None = field(default=None, metadata={"help": "output dir; default: beside the runs"})
    benchmark: str | None = field(default=None, metadata={"help": "a chain dir's benchmark; default: its only one"})
    overwrite: bool = field(default=False, metadata={"help": "write over an earlier comparison"})
    lengths: list | None = field(default=None, metadata={"help": "answer lengths (tokens) of the length curves, "
                                                          "besides each run's max_new_tokens; default [10,20,40]"})


def _lengths(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in items):
        raise UsageError(f"compare: lengths must be a list of token counts >= 1, e.g. lengths=[5,10,20]; got {value!r}")
    return tuple(items)


def cmd_compare(opts: dict[str, Any], args: dict[str, Any]) -> None:
    """`python -m measure compare <chain dir>` or `compare runs=[dirA,dirB] labels=[A,B] out=<dir>`: compare
    measured runs (SCR, accuracy, paired statistics, verdicts) in compare.json / .md / .html."""
    from measure.analysis.compare import compare_listed, compare_runs
    positional = opts["dirs"]
    if args:
        raise UsageError(f"compare: unknown option(s) {', '.join(args)}; valid: runs, labels, out, benchmark, overwrite, "
                         "lengths")
    lengths = {"sensitivity_lengths": k} if (k := _lengths(opts["lengths"])) else {}
    if positional and opts["runs"]:
        raise UsageError("compare: give a chain dir or runs=[...], not both")
    if positional:
        result = compare_listed(Path(positional[0]), opts["benchmark"], Path(opts["out"]) if opts["out"] else None,
                                opts["overwrite"], **lengths)
    elif opts["runs"]:
        runs = opts["runs"] if isinstance(opts["runs"], list) else [opts["runs"]]
        result = compare_runs([Path(r) for r in runs], opts["labels"], Path(opts["out"]) if opts["out"] else None,
                              opts["overwrite"], **lengths)
    else:
        raise UsageError("compare: give a dir with a runs.json (python -m measure compare checkpoints/<name>) or runs=[dirA,dirB]")
    print(result.verdict.text or "comparison written")


@dataclass(frozen=True)
class CascadeOptions:
    signals: list | None = field(default=None, metadata={"help": "signals to cascade; default: every recorded one"})
    costs: list | None = field(default=None, metadata={"help": "cost per signal; default: the measured seconds"})
    out: str | None = field(default=None, metadata={"help": "output dir; default: <measure dir>/cascade"})
    seed: int = field(default=0, metadata={"help": "calibration split seed"})
    calib_fraction: float = field(default=0.5, metadata={"help": "share of questions that calibrate thresholds"})
    cv_folds: int | None = field(default=None, metadata={"help": "cross-validation folds instead of one split"})
    overwrite: bool = field(default=False, metadata={"help": "write over an earlier cascade"})


def cmd_cascade(opts: dict[str, Any], args: dict[str, Any]) -> None:
    """`python -m measure cascade <measure dir> [signals=[...]] [costs=[...]] [cv_folds=5]`: the cheapest
    cascade of signals that keeps the detector's quality (cascade.json / .md)."""
    from measure.analysis.cascade import run_cascade
    positional = opts["dirs"]
    if args:
        raise UsageError(f"cascade: unknown option(s) {', '.join(args)}; valid: signals, costs, out, seed, "
                         "calib_fraction, cv_folds, overwrite")
    if len(positional) != 1:
        raise UsageError("cascade: give one measure dir (or samples.jsonl beside questions.jsonl)")
    result = run_cascade(Path(positional[0]), opts["signals"], opts["costs"], Path(opts["out"]) if opts["out"] else None,
                         seed=as_seed(opts["seed"], "seed"), calib_fraction=opts["calib_fraction"],
                         cv_folds=None if opts["cv_folds"] is None else as_int(opts["cv_folds"], "cv_folds"),
                         overwrite=opts["overwrite"])
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.out_dir}")


@dataclass(frozen=True)
class PlanOptions:
    scr_from: float | None = field(default=None, metadata={"help": "SCR at the earlier stage (0..1)", "required": True})
    scr_to: float | None = field(default=None, metadata={"help": "SCR at the later stage, the rise to detect (0..1)",
                                                          "required": True})
    power: float = field(default=0.8, metadata={"help": "probability of detecting the rise"})
    alpha: float = field(default=0.05, metadata={"help": "test level (divide by the Holm family size for a "
                                                         "comparison of several stages and clusterers)"})
    discordant_down: float = field(default=0.0, metadata={
        "help": "share of questions going single -> multi (McNemar's b); 0 = none leave the single-cluster set, "
                "the most favourable case, so the answer is a lower bound"})


def cmd_plan(opts: dict[str, Any], args: dict[str, Any]) -> None:
    """`python -m measure plan scr_from=0.015 scr_to=0.04`: how many questions a paired exact McNemar test
    needs to detect an SCR rise (measure/analysis/power.py: exact power by enumeration)."""
    from measure.analysis.power import mcnemar_power, questions_needed
    if args:
        raise UsageError(f"plan: unknown option(s) {', '.join(args)}; valid: scr_from, scr_to, power, alpha, discordant_down")
    values = {k: as_number(opts[k], k) for k in ("scr_from", "scr_to", "power", "alpha", "discordant_down")}
    for key in values:
        if not 0 <= values[key] <= 1 or (key in ("power", "alpha") and values[key] in (0, 1)):
            bounds = "strictly between 0 and 1" if key in ("power", "alpha") else "between 0 and 1"
            raise UsageError(f"{key}: must be {bounds}, got {values[key]}")
    try:
        n = questions_needed(values["scr_from"], values["scr_to"], values["discordant_down"], values["alpha"],
                             values["power"])
    except ValueError as e:
        raise UsageError(f"plan: {e}") from None
    up = values["scr_to"] - values["scr_from"] + values["discordant_down"]
    print(f"SCR {values['scr_from']} -> {values['scr_to']} (single -> multi share {values['discordant_down']}, "
          f"multi -> single {round(up, 6)}), exact McNemar at alpha {values['alpha']}, a rise counted only when c > b:")
    print(f"  questions needed for power {values['power']}: {n if n is not None else 'more than 200000'}")
    for m in (50, 100, 200, 500, 1000):
        print(f"  power with {m} questions: {mcnemar_power(m, up, values['discordant_down'], values['alpha']):.3f}")


# command -> (handler, its options, what its positional arguments are, whether it takes the measure settings)
COMMANDS: dict[str, tuple[Callable, type, str | None, bool]] = {
    "run": (cmd_run, RunOptions, None, True),
    "score": (cmd_score, ScoreOptions, None, True),
    "compare": (cmd_compare, CompareOptions, "a chain dir (or runs=[...])", False),
    "cascade": (cmd_cascade, CascadeOptions, "one measure dir (or samples.jsonl beside questions.jsonl)", False),
    "plan": (cmd_plan, PlanOptions, None, False),
}


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in HELP_WORDS:
        print(__doc__.strip("\n") + "\n\ncommands:\n" + "\n".join(
            f"  {name.ljust(9)}{' '.join(handler.__doc__.split())}" for name, (handler, *_) in COMMANDS.items()))
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}{suggest(command, COMMANDS)}")
    handler, options, positional, takes_settings = COMMANDS[command]
    from measure.scoring.config import MeasureSettings
    opts, args = parse_cli(rest, handler.__doc__, options, positional="dirs" if positional else None,
                           sections=(("measure settings (plain keys)", MeasureSettings),) if takes_settings else ())
    handler(opts, args)
    from measure.sampling.ranks import exit_launched_process, leave_process_group
    leave_process_group()
    exit_launched_process()   # a launched rank ends here, past the C++ teardown that can abort it
