"""Pure logic of batch-assets, with no dagster import.

Scoring, feature SQL, the model registry, the demo data generator and the demo model training live here so
they can be tested directly and reused outside Dagster (CLI, benchmarks).
"""
