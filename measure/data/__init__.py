"""The evaluation sets: benchmark specs, loaders and gold-answer parsing (benchmarks) and the one text and
number normalization every judge and clusterer shares (text). Imports only `common` and `records`."""
