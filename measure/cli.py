"""`python -m measure <command> key=value ...` -- the measurement CLI. Subcommands and nothing else.

    python -m measure run model=<dir | adapter dir | hub id | file.gguf | pkg:<package>> benchmark=gsm8k
                          [benchmark_path=...] [limit=50] out=<dir>
                          [backend=hf|vllm] [vllm_logprobs=20] [decoder=compact|generate]
    accelerate launch --num_processes 8 -m measure run ...      (questions sharded across processes)
    python -m measure score samples=<samples.jsonl> out=<dir> [clusterers=[exact,jaccard]] [judge=short_qa]
    python -m measure compare runs=[dirA,dirB] labels=[A,B] out=<dir>
    python -m measure compare <dir with runs.json, e.g. checkpoints/<name>> [benchmark=...] [out=...]
    python -m measure cascade <measure dir> [signals=[...]] [costs=[...]] [cv_folds=5]

Measurement settings (n_samples, temperature, top_p, max_new_tokens, rows_per_call, batch_size, stop, decoder,
clusterers, signals, embedding_model, nli_model, judge_margin, ambiguous, bootstrap, seed, ...) are plain keys
for `run model=...` and `score` (a recipe's stages: `python -m train.measure_stage recipe=... stage=...`,
with `measure.<key>` overrides).

Batching (measure/sampling/batching.py): a decode call holds rows_per_call rows = prompts x (greedy + N); unset, it is
auto (176 on a CPU; on a CUDA GPU derived from its total memory and the model's size). batch_size = questions
per batch (the resume cache and sharding unit; default one decode call's prompts); an explicit batch_size
keeps that unit and decodes its batch in calls of the rows budget. The report records settings.decode_plan.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.common.overrides import parse_overrides, pop_known
from measure.records.results import Report
from measure.common.values import as_int, as_seed


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


def cmd_run(args: dict[str, Any]) -> None:
    from measure import pipeline
    from measure.common.io import provenance
    if "recipe" in args:  # the library knows no recipes; the application measures its stages
        raise UsageError("`measure run recipe=...` is `python -m train.measure_stage recipe=... stage=...` (or "
                         "`accelerate launch -m train.measure_stage ...`); `measure run` takes model=... benchmark=... out=...")
    opts = pop_known(args, {"model": None, "benchmark": None, "benchmark_path": None, "limit": None, "split": None,
                            "out": None, "prompt_format": "chat", "overwrite": False,
                            "backend": None, "vllm_logprobs": None})  # backends: see measure/sampling/backends.py
    for key in ("model", "benchmark", "out"):
        if not opts[key]:
            raise UsageError(f"missing {key}=...; `measure run` takes model=... benchmark=... out=... (a recipe's stage: "
                             "python -m train.measure_stage recipe=... stage=...)")
    if opts["prompt_format"] not in ("chat", "qa"):
        raise UsageError(f"prompt_format: unknown {opts['prompt_format']!r}; valid choices: chat, qa")
    settings = _settings({**args, "benchmarks": [{"name": opts["benchmark"], "path": opts["benchmark_path"],
                                                  "limit": opts["limit"], "split": opts["split"]}]}, "run")
    from measure.sampling.model_source import check_reference
    check_reference(str(opts["model"]))  # after the settings, before anything is loaded or written
    out = Path(opts["out"])
    report = pipeline.measure_model(str(opts["model"]), settings.benchmarks[0], settings, out,
                                    prompt_format=opts["prompt_format"], overwrite=opts["overwrite"],
                                    provenance=provenance(seed=settings.seed), backend=opts["backend"],
                                    vllm_logprobs=None if opts["vllm_logprobs"] is None
                                    else as_int(opts["vllm_logprobs"], "vllm_logprobs", lo=1))
    print_summary(report, out)


def cmd_score(args: dict[str, Any]) -> None:
    from measure import pipeline
    from measure.scoring.correctness import JUDGES
    opts = pop_known(args, {"samples": None, "out": None, "judge": None, "overwrite": False})
    if not opts["samples"] or not opts["out"]:
        raise UsageError("`measure score` needs samples=<samples.jsonl> and out=<dir>")
    if opts["judge"] is not None and opts["judge"] not in JUDGES:
        raise UsageError(f"judge: unknown {opts['judge']!r}{suggest(str(opts['judge']), JUDGES)}")
    settings = _settings(args, "score")
    report = pipeline.score_file(Path(opts["samples"]), Path(opts["out"]), settings, judge=opts["judge"],
                                 overwrite=opts["overwrite"])
    print_summary(report, Path(opts["out"]))


def cmd_compare(args: dict[str, Any], positional: list[str]) -> None:
    from measure.analysis.compare import compare_listed, compare_runs
    opts = pop_known(args, {"runs": None, "labels": None, "out": None, "benchmark": None, "overwrite": False})
    if args:
        raise UsageError(f"compare: unknown option(s) {', '.join(args)}; valid: runs, labels, out, benchmark, overwrite")
    if positional and opts["runs"]:
        raise UsageError("compare: give a chain dir or runs=[...], not both")
    if positional:
        result = compare_listed(Path(positional[0]), opts["benchmark"], Path(opts["out"]) if opts["out"] else None,
                               opts["overwrite"])
    elif opts["runs"]:
        runs = opts["runs"] if isinstance(opts["runs"], list) else [opts["runs"]]
        result = compare_runs([Path(r) for r in runs], opts["labels"], Path(opts["out"]) if opts["out"] else None,
                              opts["overwrite"])
    else:
        raise UsageError("compare: give a dir with a runs.json (python -m measure compare checkpoints/<name>) or runs=[dirA,dirB]")
    print(result.verdict.text or "comparison written")


def cmd_cascade(args: dict[str, Any], positional: list[str]) -> None:
    from measure.analysis.cascade import run_cascade
    opts = pop_known(args, {"signals": None, "costs": None, "out": None, "seed": 0, "calib_fraction": 0.5,
                            "cv_folds": None, "overwrite": False})
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


COMMANDS: dict[str, Callable] = {"run": cmd_run, "score": cmd_score, "compare": cmd_compare, "cascade": cmd_cascade}
TAKES_POSITIONAL = ("compare", "cascade")


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}{suggest(command, COMMANDS)}")
    positional = [a for a in rest if "=" not in a] if command in TAKES_POSITIONAL else []
    args = parse_overrides([a for a in rest if a not in positional])
    if command in TAKES_POSITIONAL:
        COMMANDS[command](args, positional)
    else:
        COMMANDS[command](args)
    from measure.sampling.ranks import exit_launched_process, leave_process_group
    leave_process_group()
    exit_launched_process()   # a launched rank ends here, past the C++ teardown that can abort it
