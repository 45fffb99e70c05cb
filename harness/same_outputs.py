"""Are two chain runs the same? Every file of one output dir against the other, byte for byte.

    python -m harness.same_outputs a=/tmp/run1/toy b=/tmp/run2/toy

What a run may not reproduce is its clock and its code version: git commit, wall times, Trainer
throughput, the seconds per question a report records (and what is computed from them: the cascade's
default costs), and the stage.json hashes that therefore differ (stage_hash, parent_hash, a report's sha256 of stage.json). Those
values are masked -- in JSON by key, in markdown/HTML by the same keys' text -- and everything else must
match exactly: samples, per-question records, reports, plots, comparison, weights. cascade.json may
differ in its measured costs alone (its signals, thresholds, coverages and accuracies must match);
cascade.md prints those costs, so it is listed apart. Prints one line per file that is not identical and
a summary; exit 1 when anything else differs (a refactor that changed a result).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from measure.common.errors import UsageError, exit_on_usage_error
from measure.common.cli_args import parse_cli

# "stage.json": the sha256 a report records of every model file it loaded, stage.json included (wall times inside)
CLOCK_KEYS = {"git_commit", "stage_hash", "parent_hash", "wall_time_s", "train_runtime", "train_samples_per_second",
              "train_steps_per_second", "timing", "seconds_per_question", "stage.json"}
CLOCK_FILES = {"chain_timings.json"}          # nothing but wall times
CLOCK_DEPENDENT = ("cascade/",)                # default costs are measured seconds: compared, reported apart
COST_KEYS = {"costs", "cost_accounting", "relative_cost"}   # in cascade.json: masked too, the rest must match
TEXT = (".json", ".jsonl", ".md", ".html", ".txt", ".jinja")
CLOCK_TEXT = re.compile(r'("?(?:%s)"?\s*[:=]\s*)("[^"]*"|[-+0-9.eE]+)' % "|".join(map(re.escape, sorted(CLOCK_KEYS))))


# lists that are sets: compared whatever their order (threadpoolctl's pools come in library load order)
UNORDERED_KEYS = {"numpy_blas"}


def scrub(value, keys: set[str] = CLOCK_KEYS):
    if isinstance(value, dict):
        return {k: "<clock>" if k in keys else
                sorted((scrub(v, keys) for v in value[k]), key=lambda x: json.dumps(x, sort_keys=True))
                if k in UNORDERED_KEYS and isinstance(v, list) else scrub(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, keys) for v in value]
    return value


def normalized(path: Path, keys: set[str] = CLOCK_KEYS) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".json":
        return json.dumps(scrub(json.loads(data), keys), sort_keys=True).encode()
    if path.suffix in TEXT:
        return CLOCK_TEXT.sub(r"\1<clock>", data.decode("utf-8")).encode()
    return data


def compare_dirs(a: Path, b: Path) -> dict:
    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    out: dict = {"only_in_a": sorted(files_a - files_b), "only_in_b": sorted(files_b - files_a),
                 "identical_bytes": [], "identical_but_clock": [], "identical_but_costs": [], "differ": [],
                 "differ_clock_dependent": []}
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if pa.read_bytes() == pb.read_bytes():
            out["identical_bytes"].append(rel)
        elif Path(rel).name in CLOCK_FILES or normalized(pa) == normalized(pb):
            out["identical_but_clock"].append(rel)
        elif pa.suffix == ".json" and normalized(pa, CLOCK_KEYS | COST_KEYS) == normalized(pb, CLOCK_KEYS | COST_KEYS):
            out["identical_but_costs"].append(rel)
        else:
            out["differ_clock_dependent" if any(c in rel for c in CLOCK_DEPENDENT) else "differ"].append(rel)
    return out


@exit_on_usage_error
@dataclass(frozen=True)
class Options:
    a: str | None = field(default=None, metadata={"help": "one chain output dir"})
    b: str | None = field(default=None, metadata={"help": "the other"})


def main(argv: list[str] | None = None) -> None:
    opts, _ = parse_cli(argv, __doc__, Options, strict=True)
    if not opts["a"] or not opts["b"] or not Path(opts["a"]).is_dir() or not Path(opts["b"]).is_dir():
        raise UsageError("usage: python -m harness.same_outputs a=<output dir> b=<output dir> (two existing dirs)")
    result = compare_dirs(Path(opts["a"]), Path(opts["b"]))
    for key in ("only_in_a", "only_in_b", "identical_but_costs", "differ", "differ_clock_dependent"):
        for rel in result[key]:
            print(f"{key}: {rel}")
    print(f"{len(result['identical_bytes'])} files byte-identical, {len(result['identical_but_clock'])} identical "
          f"except clock/commit fields, {len(result['identical_but_costs'])} identical except measured costs, "
          f"{len(result['differ'])} differ, {len(result['differ_clock_dependent'])} clock-dependent (cascade) differ, "
          f"{len(result['only_in_a']) + len(result['only_in_b'])} in one run only")
    sys.exit(1 if result["differ"] or result["only_in_a"] or result["only_in_b"] else 0)


if __name__ == "__main__":
    main()
