"""Comparing measured runs from their saved outputs: measured run directories (measured_run), paired tests
(paired_stats), stage comparisons and their rendering (compare, compare_render), threshold/N sensitivity
(sensitivity) and the signal cascade with its costs (cascade, cascade_costs). Imports `common`, `records`,
`data` and `scoring`; never samples a model."""
