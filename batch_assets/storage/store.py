"""A root folder on a filesystem: a local path or ``s3://bucket/prefix``, through ``pyarrow.fs``.

The registry and the landing reader work on a :class:`Store`, so the same code serves
``/srv/batch-assets/registry`` and ``s3://models/registry``. Paths given to a store are relative to its
root and use ``/``. What differs between the backends is said where it matters:

- ``write_bytes`` is atomic on both: a local file is written beside its target and renamed over it; an S3
  object is one PUT, which readers see whole or not at all.
- S3 has no rename and no lock; callers that need a commit point write a small marker object last
  (the registry's manifest).

The tables themselves are Delta tables (``batch_assets.storage.lake``): delta-rs commits them, with its
own conditional writes on S3.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class S3Options:
    """How to reach S3. ``None`` fields fall back to the AWS default chain (env, profile, instance role)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never print credentials
        return f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r}, credentials=<hidden>)"

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict[str, object] = {}
        if self.endpoint_url:
            parsed = urllib.parse.urlparse(self.endpoint_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"S3 endpoint {self.endpoint_url!r}: expected http(s)://host[:port]")
            kwargs |= {"endpoint_override": parsed.netloc, "scheme": parsed.scheme}
        if self.region:
            kwargs["region"] = self.region
        if self.access_key_id and self.secret_access_key:
            kwargs |= {"access_key": self.access_key_id, "secret_key": self.secret_access_key}
            if self.session_token:
                kwargs["session_token"] = self.session_token
        return pafs.S3FileSystem(**kwargs)


def is_s3(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith(S3_SCHEME)


class StoreError(Exception):
    pass


class Store:
    """A folder of files under ``uri`` (a local path or ``s3://bucket/prefix``)."""

    def __init__(self, uri: str | os.PathLike[str], s3: S3Options | None = None) -> None:
        text = str(uri)
        self.uri = text.rstrip("/") if is_s3(text) else text
        self.is_local = not is_s3(text)
        if self.is_local:
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
            self.base = str(Path(text).expanduser().absolute())
        else:
            bucket_prefix = text[len(S3_SCHEME) :].strip("/")
            if not bucket_prefix:
                raise StoreError(f"{text!r}: expected s3://bucket[/prefix]")
            self.fs = (s3 or S3Options()).filesystem()
            self.base = bucket_prefix

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # -- paths ---------------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (for pyarrow calls with ``filesystem=self.fs``)."""
        rel = rel.strip("/")
        if rel and (".." in PurePosixPath(rel).parts):
            raise StoreError(f"path {rel!r} leaves the store root")
        return f"{self.base}/{rel}" if rel else self.base

    def describe(self, rel: str = "") -> str:
        """``rel`` as the user wrote the root: a local path or an ``s3://`` URI."""
        rel = rel.strip("/")
        if self.is_local:
            return self.path(rel)
        return f"{S3_SCHEME}{self.path(rel)}"

    def local_path(self, rel: str = "") -> Path:
        if not self.is_local:
            raise StoreError(f"{self.describe(rel)} is not a local path")
        return Path(self.path(rel))

    def child(self, rel: str) -> Store:
        """The store rooted at ``rel`` below this one, on the same filesystem."""
        sub = object.__new__(Store)
        sub.uri, sub.is_local, sub.fs, sub.base = self.describe(rel), self.is_local, self.fs, self.path(rel)
        return sub

    # -- reading -------------------------------------------------------------------------------------
    def _info(self, rel: str) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path(rel))

    def is_file(self, rel: str) -> bool:
        return self._info(rel).type == pafs.FileType.File

    def is_dir(self, rel: str = "") -> bool:
        return self._info(rel).type == pafs.FileType.Directory

    def exists(self, rel: str) -> bool:
        return self._info(rel).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.describe(rel)} does not exist") from exc

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def _list(self, rel: str) -> list[pafs.FileInfo]:
        if not self.is_dir(rel):
            return []
        return self.fs.get_file_info(pafs.FileSelector(self.path(rel), allow_not_found=True))

    def list_dirs(self, rel: str = "") -> list[str]:
        return sorted(i.base_name for i in self._list(rel) if i.type == pafs.FileType.Directory)

    def list_files(self, rel: str = "") -> list[str]:
        return sorted(i.base_name for i in self._list(rel) if i.type == pafs.FileType.File)

    # -- writing -------------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` atomically (see the module docstring)."""
        if self.is_local:
            target = self.local_path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        with self.fs.open_output_stream(self.path(rel)) as f:
            f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def upload(self, local: Path, rel: str) -> None:
        """Copy a local file to ``rel`` (streamed; atomic for the reader as ``write_bytes``)."""
        if self.is_local:
            self.write_bytes(rel, Path(local).read_bytes())
            return
        pafs.copy_files(
            str(local),
            self.path(rel),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )

    def delete_dir(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_dir(self.path(rel))

    def delete_file(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self.path(rel))
