"""The warehouse: a DuckDB file through dagster-duckdb, with the storage contracts created on connect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from batch_assets.scoring.warehouse import ensure_schema


class WarehouseResource(DuckDBResource):
    """DuckDB connections with the contract tables present.

    ``get_connection`` is overridden because dagster-duckdb 0.29's closes the connection only when the
    block exits normally: after a failed step the file stayed open (and locked against other processes)
    until garbage collection. This one always closes, and retries opening while another process holds the
    file's write lock.
    """

    threads: int | None = Field(default=None, description="DuckDB worker threads; default: all cores.")
    lock_retries: int = Field(default=10, description="Attempts to open a file locked by another process.")
    memory_limit: str | None = Field(
        default=None,
        description="DuckDB memory_limit (e.g. '1GB'): caps its buffer pool, which otherwise caches every "
        "block read up to 80% of RAM; default: DuckDB's own.",
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        config = {"custom_user_agent": "dagster", **self.connection_config}
        delay = 0.1
        for attempt in range(self.lock_retries + 1):
            try:
                conn = duckdb.connect(self.database, read_only=False, config=config)
                break
            except duckdb.IOException:
                if attempt == self.lock_retries:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.get_connection() as con:
            if self.threads:
                con.execute("SET threads = $n", {"n": self.threads})
            if self.memory_limit:
                con.execute("SET memory_limit = $m", {"m": self.memory_limit})
            ensure_schema(con)
            yield con
