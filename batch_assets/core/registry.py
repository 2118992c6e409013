"""A model registry on a folder or S3 prefix: immutable, checksummed versions, aliases and an event log.

Layout under ``root`` (a local path or ``s3://bucket/prefix``, see :mod:`batch_assets.storage.store`)::

    <model>/<version>/model.safetensors   the artifact (see model_format)
    <model>/<version>/manifest.json       version, sha256, inputs, output, reference statistics, training
    <model>/aliases.json                  {"champion": "1", ...}
    <model>/events.jsonl                  local: append-only, one JSON line per registration and promotion
    <model>/events/<time>-<id>.json       S3: one object per event (S3 cannot append)

A version appears whole or not at all, and an existing version is never overwritten. Locally the version
folder is staged under a temporary name and renamed into place (under a file lock). On S3 the artifact is
uploaded first and the manifest last: the manifest is the commit marker, readers ignore a version folder
without one, and registering refuses a version whose manifest exists. S3 has no lock, so two concurrent
registrations of the *same* version number could race; register from one place (CI or one operator).
The artifact's sha256 is checked on every load, on both backends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from torch import nn

from batch_assets.core import model_format
from batch_assets.core.names import check_name
from batch_assets.storage.store import S3Options, Store

ARTIFACT_NAME = "model.safetensors"
MANIFEST_NAME = "manifest.json"


class RegistryError(Exception):
    """Base class of registry errors; the message says what to do."""


class ModelNotFound(RegistryError):
    pass


class VersionExists(RegistryError):
    pass


class ChecksumMismatch(RegistryError):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    """One registered, immutable model version and its manifest."""

    name: str
    version: str
    manifest: dict[str, Any]
    path: PurePath  # a local Path, or the bucket/key path of an S3 version folder

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest["inputs"]]

    @property
    def output_range(self) -> tuple[float, float]:
        lo, hi = self.manifest["output"].get("range", [float("-inf"), float("inf")])
        return float(lo), float(hi)

    @property
    def artifact_path(self) -> PurePath:
        return self.path / self.manifest["artifact"]


@dataclass(frozen=True)
class LoadedModel:
    """A verified model version and its torch module, ready to score."""

    info: ModelVersion
    module: nn.Module


class ModelRegistry:
    """The model registry rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    def __init__(self, root: str | os.PathLike[str], s3: S3Options | None = None) -> None:
        self.store = Store(root, s3)
        self.root: Path | str = Path(root) if self.store.is_local else self.store.uri

    # -- reading -------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [n for n in self.store.list_dirs() if not n.startswith(".")]

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` in registration order."""
        model = check_name("model name", name)
        if not self.store.is_dir(model):
            raise ModelNotFound(f"model {name!r} is not registered under {self.root}")
        manifests = []
        for v in self.store.list_dirs(model):
            if v.startswith(".") or not self.store.is_file(f"{model}/{v}/{MANIFEST_NAME}"):
                continue  # a staging folder, or an S3 upload whose manifest (commit marker) is not written
            manifests.append(
                (json.loads(self.store.read_text(f"{model}/{v}/{MANIFEST_NAME}"))["created_at"], v)
            )
        return [v for _, v in sorted(manifests, key=lambda cv: (cv[0], _version_sort_key(cv[1])))]

    def get(self, name: str, version: str) -> ModelVersion:
        check_name("model version", version)
        rel = f"{check_name('model name', name)}/{version}"
        if not self.store.is_file(f"{rel}/{MANIFEST_NAME}"):
            raise ModelNotFound(f"model {name!r} has no version {version!r} under {self.root}")
        manifest = json.loads(self.store.read_text(f"{rel}/{MANIFEST_NAME}"))
        artifact = str(manifest.get("artifact", ""))
        if artifact in ("", ".", "..") or PurePosixPath(artifact).name != artifact or "\\" in artifact:
            raise RegistryError(
                f"manifest of {name}/{version} points outside its version folder: {artifact!r}"
            )
        path: PurePath = (
            self.store.local_path(rel) if self.store.is_local else PurePosixPath(self.store.path(rel))
        )
        return ModelVersion(name=name, version=version, manifest=manifest, path=path)

    def aliases(self, name: str) -> dict[str, str]:
        rel = f"{check_name('model name', name)}/aliases.json"
        return json.loads(self.store.read_text(rel)) if self.store.is_file(rel) else {}

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """A version by alias (``champion``) or by version id; aliases win when both exist."""
        check_name("model alias or version", ref)
        aliases = self.aliases(name)
        if ref in aliases:
            return self.get(name, aliases[ref])
        if self.store.is_file(f"{check_name('model name', name)}/{ref}/{MANIFEST_NAME}"):
            return self.get(name, ref)
        raise ModelNotFound(
            f"model {name!r} has no alias or version {ref!r} (aliases: {sorted(aliases) or 'none'}; "
            f"promote one with: batch-assets models promote {name} VERSION --alias {ref})"
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        model = check_name("model name", name)
        if not self.store.is_local:
            found = [
                json.loads(self.store.read_text(f"{model}/events/{f}"))
                for f in self.store.list_files(f"{model}/events")
            ]
            return sorted(found, key=lambda e: e.get("seq", ""))
        rel = f"{model}/events.jsonl"
        if not self.store.is_file(rel):
            return []
        return [json.loads(line) for line in self.store.read_text(rel).splitlines() if line.strip()]

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version after verifying its artifact against the manifest's sha256."""
        info = self.get(name, version)
        if self.store.is_local:
            module = self._verified_load(info, Path(info.artifact_path))
        else:  # download to a private temporary file, verify it there, load that very file
            with tempfile.TemporaryDirectory(prefix="batch-assets-model-") as tmp:
                local = Path(tmp) / ARTIFACT_NAME
                local.write_bytes(self.store.read_bytes(f"{name}/{version}/{info.manifest['artifact']}"))
                module = self._verified_load(info, local)
        return LoadedModel(info=info, module=module)

    def _verified_load(self, info: ModelVersion, local: Path) -> Any:
        actual = sha256_file(local)
        if actual != info.sha256:
            raise ChecksumMismatch(
                f"refusing to load {info.name}/{info.version}: artifact sha256 {actual} does not match the "
                f"manifest's {info.sha256} (the artifact was modified after registration)"
            )
        return model_format.load_artifact(local)

    # -- writing -------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        artifact: str | os.PathLike[str],
        *,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
        actor: str = "cli",
    ) -> ModelVersion:
        """Register ``artifact`` as a new immutable version of ``name`` (the next integer when not given).

        ``metadata`` adds manifest fields (reference statistics, training window, metrics, description).
        The artifact must load and accept a batch of its declared inputs before it is registered.
        """
        check_name("model name", name)
        artifact = Path(artifact)
        if not artifact.is_file():
            raise RegistryError(f"artifact {artifact} does not exist")
        header = model_format.read_header(artifact)
        _smoke_test(artifact, header)
        with self._lock(name):
            existing = self.versions(name) if self.store.is_dir(name) else []
            if version is None:
                version = _next_version(existing)
            check_name("model version", version)
            if self.store.exists(f"{name}/{version}") if self.store.is_local else version in existing:
                raise VersionExists(
                    f"model {name!r} already has version {version!r}; versions are immutable, register the "
                    "new artifact under another version"
                )
            manifest: dict[str, Any] = {
                **(metadata or {}),
                "name": name,
                "version": version,
                "created_at": _now(),
                "artifact": ARTIFACT_NAME,
                "sha256": sha256_file(artifact),
                "size_bytes": artifact.stat().st_size,
                "format": header["format"],
                "architecture": header["architecture"],
                "torch_version": header["torch_version"],
                "inputs": header["inputs"],
                "output": header["output"],
            }
            for key, value in header["extra"].items():
                manifest.setdefault(key, value)
            manifest_text = json.dumps(manifest, indent=2, sort_keys=True)
            if self.store.is_local:
                self._publish_local(name, version, artifact, manifest_text, manifest["sha256"])
            else:
                self._publish_s3(name, version, artifact, manifest_text, manifest["sha256"])
            self._append_event(
                name, {"event": "register", "version": version, "sha256": manifest["sha256"], "actor": actor}
            )
        return self.get(name, version)

    def _publish_local(self, name: str, version: str, artifact: Path, manifest_text: str, sha: str) -> None:
        model_dir = self.store.local_path(name)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
        try:
            shutil.copyfile(artifact, staging / ARTIFACT_NAME)
            if sha256_file(staging / ARTIFACT_NAME) != sha:
                raise ChecksumMismatch(f"artifact {artifact} changed while it was being registered")
            (staging / MANIFEST_NAME).write_text(manifest_text)
            os.rename(staging, model_dir / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _publish_s3(self, name: str, version: str, artifact: Path, manifest_text: str, sha: str) -> None:
        data = artifact.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ChecksumMismatch(f"artifact {artifact} changed while it was being registered")
        self.store.write_bytes(f"{name}/{version}/{ARTIFACT_NAME}", data)
        # the manifest is the commit marker: written last, and only if no one committed this version meanwhile
        if self.store.is_file(f"{name}/{version}/{MANIFEST_NAME}"):
            raise VersionExists(f"model {name!r} version {version!r} was registered concurrently")
        self.store.write_text(f"{name}/{version}/{MANIFEST_NAME}", manifest_text)

    def promote(self, name: str, version: str, alias: str = "champion", *, actor: str = "cli") -> str | None:
        """Point ``alias`` at ``version``; returns the version it pointed at before (or None)."""
        check_name("model alias", alias)
        self.get(name, version)  # must exist
        with self._lock(name):
            aliases = self.aliases(name)
            previous = aliases.get(alias)
            aliases[alias] = version
            self.store.write_text(f"{name}/aliases.json", json.dumps(aliases, indent=2, sort_keys=True))
            self._append_event(
                name,
                {
                    "event": "promote",
                    "alias": alias,
                    "version": version,
                    "previous": previous,
                    "actor": actor,
                },
            )
        return previous

    # -- internals -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        check_name("model name", name)
        if not self.store.is_local:  # S3 has no lock; see the module docstring
            yield
            return
        lock_path = self.store.local_path(f"{name}/.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _append_event(self, name: str, event: dict[str, Any]) -> None:
        at = _now()
        if not self.store.is_local:  # one object per event; the key sorts by time
            seq = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
            body = json.dumps({"at": at, "model": name, "seq": seq, **event}, sort_keys=True)
            self.store.write_text(f"{name}/events/{seq}.json", body)
            return
        line = json.dumps({"at": at, "model": name, **event}, sort_keys=True) + "\n"
        fd = os.open(
            self.store.local_path(f"{name}/events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _version_sort_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _next_version(existing: list[str]) -> str:
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def _smoke_test(artifact: Path, header: dict[str, Any]) -> None:
    """Load the artifact and score two rows of zeros: its declared inputs must match the network."""
    import torch

    module = model_format.load_artifact(artifact)
    n = len(header["inputs"])
    try:
        with torch.inference_mode():
            out = module(torch.zeros(2, n, dtype=torch.float32))
    except Exception as exc:  # noqa: BLE001 - any failure here means the artifact cannot score its inputs
        raise RegistryError(f"artifact {artifact} cannot score {n} declared input features: {exc}") from exc
    if tuple(out.shape) != (2,):
        raise RegistryError(f"artifact {artifact} returns shape {tuple(out.shape)} for 2 rows; expected (2,)")
