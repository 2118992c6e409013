"""The dagster-free core: the scorer, drift, the partition checks' arithmetic, the rollout decision, the
model registry and its artifact format, feature contracts, spec files and names. Tested directly and
reused outside Dagster (the CLI, the benchmarks)."""
