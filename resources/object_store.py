"""How resources reach S3 (or nothing, in the embedded default): endpoint, region and credentials.

Built in ``resources/builder.py`` with every value from ``dg.EnvVar``, so the values are read in the run
process and neither the UI nor run config nor the event log ever shows them (only the variable names).
Unset fields fall back to the AWS default chain (``AWS_*`` env, profile, IRSA / instance role).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from batch_assets.storage.store import S3Options, Store


class ObjectStoreResource(dg.ConfigurableResource):
    """Connection settings for ``s3://`` URIs; unused for local paths.

    The registry, landing and lake resources inherit these fields (flat, not a nested resource, so they
    stay plain resources that tests and sensors can pass around without opening a context).
    """

    endpoint_url: str | None = Field(default=None, description="S3 API endpoint (MinIO, moto, ...).")
    region_name: str | None = Field(default=None, description="S3 region.")
    aws_access_key_id: str | None = Field(default=None, description="Access key id (from an EnvVar).")
    aws_secret_access_key: str | None = Field(default=None, description="Secret key (from an EnvVar).")
    aws_session_token: str | None = Field(default=None, description="STS session token (from an EnvVar).")

    def s3_options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url or None,
            region=self.region_name or None,
            access_key_id=self.aws_access_key_id or None,
            secret_access_key=self.aws_secret_access_key or None,
            session_token=self.aws_session_token or None,
        )

    def store_at(self, uri: str) -> Store:
        return Store(uri, self.s3_options())
