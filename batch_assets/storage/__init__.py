"""Storage: the Delta Lake tables and the object store under them. No Dagster imports."""
