"""A model registry on a local folder: immutable, checksummed versions, aliases and an event log.

Layout under ``root``::

    <model>/<version>/model.safetensors   the artifact (see model_format)
    <model>/<version>/manifest.json       version, sha256, inputs, output, reference statistics, training
    <model>/aliases.json                  {"champion": "1", ...}
    <model>/events.jsonl                  append-only: one JSON line per registration and promotion

A version directory is staged under a temporary name and renamed into place, so it appears whole or not at
all, and an existing version is never overwritten. The artifact's sha256 is checked on every load.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from batch_assets.scoring import model_format
from batch_assets.scoring.names import check_name

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
    path: Path

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
    def artifact_path(self) -> Path:
        return self.path / self.manifest["artifact"]


@dataclass(frozen=True)
class LoadedModel:
    """A verified model version and its torch module, ready to score."""

    info: ModelVersion
    module: nn.Module


class ModelRegistry:
    """The model registry on a local folder (``root``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` in registration order."""
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"model {name!r} is not registered under {self.root}")
        found = [p for p in model_dir.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file()]
        manifests = [(json.loads((p / MANIFEST_NAME).read_text())["created_at"], p.name) for p in found]
        return [v for _, v in sorted(manifests, key=lambda cv: (cv[0], _version_sort_key(cv[1])))]

    def get(self, name: str, version: str) -> ModelVersion:
        check_name("model version", version)
        path = self._model_dir(name) / version
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelNotFound(f"model {name!r} has no version {version!r} under {self.root}")
        manifest = json.loads(manifest_path.read_text())
        artifact = (path / manifest.get("artifact", "")).resolve()
        if artifact.parent != path.resolve():
            raise RegistryError(f"manifest of {name}/{version} points outside its version folder: {artifact}")
        return ModelVersion(name=name, version=version, manifest=manifest, path=path)

    def aliases(self, name: str) -> dict[str, str]:
        path = self._model_dir(name) / "aliases.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """A version by alias (``champion``) or by version id; aliases win when both exist."""
        check_name("model alias or version", ref)
        aliases = self.aliases(name)
        if ref in aliases:
            return self.get(name, aliases[ref])
        if (self._model_dir(name) / ref / MANIFEST_NAME).is_file():
            return self.get(name, ref)
        raise ModelNotFound(
            f"model {name!r} has no alias or version {ref!r} (aliases: {sorted(aliases) or 'none'}; "
            f"promote one with: batch-assets models promote {name} VERSION --alias {ref})"
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self._model_dir(name) / "events.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version after verifying its artifact against the manifest's sha256."""
        info = self.get(name, version)
        actual = sha256_file(info.artifact_path)
        if actual != info.sha256:
            raise ChecksumMismatch(
                f"refusing to load {name}/{version}: artifact sha256 {actual} does not match the manifest's "
                f"{info.sha256} (the artifact was modified after registration)"
            )
        module = model_format.load_artifact(info.artifact_path)
        return LoadedModel(info=info, module=module)

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
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(name):
            if version is None:
                version = _next_version(self.versions(name) if any(model_dir.iterdir()) else [])
            check_name("model version", version)
            final = model_dir / version
            if final.exists():
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
            staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
            try:
                shutil.copyfile(artifact, staging / ARTIFACT_NAME)
                if sha256_file(staging / ARTIFACT_NAME) != manifest["sha256"]:
                    raise ChecksumMismatch(f"artifact {artifact} changed while it was being registered")
                (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._append_event(
                name, {"event": "register", "version": version, "sha256": manifest["sha256"], "actor": actor}
            )
        return self.get(name, version)

    def promote(self, name: str, version: str, alias: str = "champion", *, actor: str = "cli") -> str | None:
        """Point ``alias`` at ``version``; returns the version it pointed at before (or None)."""
        check_name("model alias", alias)
        self.get(name, version)  # must exist
        with self._lock(name):
            aliases = self.aliases(name)
            previous = aliases.get(alias)
            aliases[alias] = version
            path = self._model_dir(name) / "aliases.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(aliases, indent=2, sort_keys=True))
            os.replace(tmp, path)
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
    def _model_dir(self, name: str) -> Path:
        return self.root / check_name("model name", name)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        lock_path = self._model_dir(name) / ".lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _append_event(self, name: str, event: dict[str, Any]) -> None:
        line = json.dumps({"at": _now(), "model": name, **event}, sort_keys=True) + "\n"
        fd = os.open(self._model_dir(name) / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
