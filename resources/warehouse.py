"""The warehouse: DuckDB (through dagster-duckdb) as the SQL engine over the Delta tables of the lake.

DuckDB holds no data here: each connection is in memory, with every lake table registered as a view over
its Delta table (``batch_assets.storage.lake``). Writes go to the lake as one Delta commit per partition,
so any number of processes and pods read and write at once; there is no file lock and no writer pool.
Storage options and credentials for ``s3://`` lakes use dagster-deltalake's ``S3Config``; every secret is
bound as a ``dg.EnvVar`` by the builder, so it is read in the run process and never stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
from dagster_deltalake import S3Config
from dagster_deltalake.config import ClientConfig
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import connect_lake


class WarehouseResource(DuckDBResource):
    """DuckDB connections with every table of the lake at ``lake_uri`` registered."""

    database: str = Field(
        default=":memory:", description="DuckDB database; in memory: the lake holds the data."
    )
    lake_uri: str = Field(description="Lake root: a local folder or s3://bucket/prefix.")
    threads: int | None = Field(default=None, description="DuckDB worker threads; default: all cores.")
    memory_limit: str | None = Field(
        default=None,
        description="DuckDB memory_limit (e.g. '1GB'): caps its buffer pool; default: DuckDB's own.",
    )
    endpoint_url: str | None = Field(default=None, description="S3 API endpoint (MinIO, moto, ...).")
    region_name: str | None = Field(default=None, description="S3 region.")
    aws_access_key_id: str | None = Field(default=None, description="Access key id (from an EnvVar).")
    aws_secret_access_key: str | None = Field(default=None, description="Secret key (from an EnvVar).")
    aws_session_token: str | None = Field(default=None, description="STS session token (from an EnvVar).")

    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options for the lake, through dagster-deltalake's config (none for a folder)."""
        if not self.lake_uri.startswith("s3://"):
            return {}
        s3 = S3Config(
            access_key_id=self.aws_access_key_id or None,
            secret_access_key=self.aws_secret_access_key or None,
            token=self.aws_session_token or None,
            region=self.region_name or None,
            endpoint=self.endpoint_url or None,
        ).str_dict()
        s3.pop("provider", None)
        client = ClientConfig(allow_http=(self.endpoint_url or "").startswith("http://") or None).str_dict()
        return {**s3, **client}

    # One Lake per resource instance (per run and process): it keeps the tables it opened up to date
    _lake: Lake | None = PrivateAttr(default=None)

    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = Lake(self.lake_uri, self.storage_options())
        return self._lake

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # dagster-duckdb 0.29's closes the connection only when the block exits normally; this one always does
        conn = duckdb.connect(
            self.database, config={"custom_user_agent": "dagster", **self.connection_config}
        )
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def connect(
        self, as_of: int | dt.datetime | None = None, tables: Sequence[str] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with every lake table registered, or only ``tables`` (as of ``as_of``, a version or a
        time, if given)."""
        with self.get_connection() as con:
            if self.threads:
                con.execute("SET threads = $n", {"n": self.threads})
            if self.memory_limit:
                con.execute("SET memory_limit = $m", {"m": self.memory_limit})
            connect_lake(con, self.lake(), as_of, tables)
            yield con
