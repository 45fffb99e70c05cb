"""Turning samples into numbers: clusterers (cluster, grouping, nli), uncertainty signals (signals),
correctness judges (correctness), metrics and their intervals (metrics, intervals), the per-run report
(report), and the measurement settings (config: it validates clusterer specs and signal names, so it sits
here, below `sampling`, which reads the settings). Imports only `common`, `records` and `data`."""
