"""measure: the measurement library. This module is its public face: what `train/`, the speed harness
(`harness/`) and users import. Nothing deeper, except `measure.common` (the plumbing: errors, values,
overrides, YAML, io, machine), which they may import directly.

The library lives in rooms; a room imports only rooms below it (tests/test_layers.py checks it):

    common     errors, values, overrides, yamlload, io, machine          plumbing; imports nothing above
    records    records, results, dynamics                               pure data
    data       benchmarks (evaluation sets), text (normalization), hh (the Anthropic HH dialogue format)
    scoring    cluster, jaccard, grouping, nli, signals, homogeneity, probe, correctness, overlap, metrics,
               intervals, report, config (the settings)
    sampling   model_source, prompts, backends, decode, batching, sample, sample_cache, ranks, preserve
    analysis   measured_run, paired_stats, measure_tests, power, compare, compare_render, sensitivity,
               length_sensitivity, cascade, cascade_costs
    (top)      cli, pipeline, __main__                                  entry and orchestration
               live                                                     measuring a model while it trains

`import measure` stays light: each name below is imported from its room on first use (PEP 562), so
importing the face does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it (the face re-exports; it defines nothing)
_NAMES: dict[str, str] = {
    # records: pure data
    "Question": "measure.records.records",
    "QuestionSamples": "measure.records.records",
    "RunIdentity": "measure.records.records",
    "Report": "measure.records.results",
    "read_report": "measure.records.results",
    "Comparison": "measure.records.comparison",
    "read_comparison": "measure.records.comparison",
    "read_cascade": "measure.records.cascade_result",
    "DYNAMICS_FILE": "measure.records.dynamics",
    "ProbeRecord": "measure.records.dynamics",
    "append_probe_record": "measure.records.dynamics",
    "read_probe_records": "measure.records.dynamics",
    "write_probe_records": "measure.records.dynamics",
    # data: evaluation sets and normalization
    "BenchmarkSpec": "measure.data.benchmarks",
    "load_benchmark": "measure.data.benchmarks",
    "normalize_answer": "measure.data.text",
    # scoring: settings, clusterers, signals, judges, intervals
    "MeasureSettings": "measure.scoring.config",
    "parse_measure_settings": "measure.scoring.config",
    "make_clusterer": "measure.scoring.cluster",
    "load_embedder": "measure.scoring.cluster",
    "dedupe": "measure.scoring.grouping",
    "NLI_LABELS": "measure.scoring.nli",
    "cluster_by_entailment": "measure.scoring.nli",
    "load_nli": "measure.scoring.nli",
    "SIGNALS": "measure.scoring.signals",
    "SignalKey": "measure.scoring.signals",
    "ShortQAJudge": "measure.scoring.correctness",
    "TruthfulQAJudge": "measure.scoring.correctness",
    "TruthfulQAOverlapJudge": "measure.scoring.correctness",
    "overlap_judgement": "measure.scoring.overlap",
    "reference_judgement": "measure.scoring.correctness",
    "ci_label": "measure.scoring.intervals",
    "HOMOGENEITY_MEASURES": "measure.scoring.homogeneity",
    "pairwise_agreement": "measure.scoring.homogeneity",
    "question_homogeneity": "measure.scoring.homogeneity",
    # sampling: models, prompts, backends, the sampler, ranks
    "PACKAGE_PREFIX": "measure.sampling.model_source",
    "check_reference": "measure.sampling.model_source",
    "is_hub_id": "measure.sampling.model_source",
    "load_causal_lm": "measure.sampling.model_source",
    "resolve_model": "measure.sampling.model_source",
    "PROMPT_FORMATS": "measure.sampling.prompts",
    "answer_end_ids": "measure.sampling.prompts",
    "encode_prompt": "measure.sampling.prompts",
    "format_prompt": "measure.sampling.prompts",
    "stop_strings": "measure.sampling.prompts",
    "HFBackend": "measure.sampling.backends",
    "load_tokenizer": "measure.sampling.backends",
    "decode_plan": "measure.sampling.batching",
    "prefill": "measure.sampling.decode",
    "step_statistics": "measure.sampling.decode",
    "StopOnText": "measure.sampling.sample",
    "count_forward_calls": "measure.sampling.sample",
    "sample_questions": "measure.sampling.sample",
    "leave_process_group": "measure.sampling.ranks",
    "ranks": "measure.sampling.ranks",
    # analysis: comparisons and the cascade
    "RUN_LIST": "measure.analysis.compare",
    "compare_runs": "measure.analysis.compare",
    "compare_listed": "measure.analysis.compare",
    "stage_table": "measure.analysis.compare_render",
    "run_cascade": "measure.analysis.cascade",
    # top floor: orchestration
    "measure_model": "measure.pipeline",
    "measured_with": "measure.pipeline",
    "print_summary": "measure.cli",
    # top floor: measuring a model while it trains
    "HomogenizationCallback": "measure.live",
    "LiveMeasurement": "measure.live",
    "measure_live": "measure.live",
    "probe_questions": "measure.live",
    "parse_stop_rules": "measure.scoring.probe",
    "homogeneity_key": "measure.scoring.probe",     # a report's homogeneity name as a dynamics.jsonl key   # HomogenizationCallback(stop_when=...)'s rules, validated
}

# whole modules on the face: the speed harness instruments them (harness/throughput.py wraps
# decode.decode_compact and reads sample's neutral generation settings)
_MODULES: dict[str, str] = {
    "decode": "measure.sampling.decode",
    "sample": "measure.sampling.sample",
}

__all__ = sorted([*_NAMES, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'measure' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
