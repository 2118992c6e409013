"""Model artifacts that load without executing pickled code.

An artifact is one safetensors file: the tensors of a ``state_dict`` plus a JSON header holding the
declared architecture, the input features (names, dtypes, order) and the output. Loading parses the header,
builds the declared architecture from :data:`ARCHITECTURES` and copies the tensors in; no pickle is ever
read, so a hostile file can at worst fail to load. Feature scaling lives inside the model (the ``mean`` and
``scale`` buffers), so scoring the manifest's feature columns with the artifact alone reproduces the scores.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

ARTIFACT_FORMAT = "safetensors-state-dict/v1"


class ArtifactError(ValueError):
    """An artifact that cannot be loaded as a batch-assets model."""


class TabularMLP(nn.Module):
    """Standardise, then a ReLU MLP with one sigmoid output: a score in [0, 1] per row."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((x - self.mean) / self.scale)).squeeze(-1)

    def set_scaling(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(scale > 0, scale, torch.ones_like(scale)))


# The architectures an artifact may declare by name. A user's own architecture is declared by reference
# instead: {"ref": "package.module:ClassName", "params": {...}} (see :func:`import_architecture`).
ARCHITECTURES: dict[str, type[nn.Module]] = {"tabular_mlp": TabularMLP}
_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
# Modules of ours that moved: artifacts registered before the move name the old path in their header.
MOVED_MODULES = {"batch_assets.scoring.device_example": "batch_assets.demo.device_example"}


def import_architecture(ref: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``package.module:ClassName`` (user code, imported, never unpickled).

    Only a class that subclasses ``torch.nn.Module`` is accepted, and never from the standard library, so a
    tampered header cannot name ``subprocess:Popen`` or similar; its init kwargs are plain JSON.
    """
    if not isinstance(ref, str) or not _REF.match(ref):
        raise ArtifactError(f"architecture reference {ref!r}: expected 'package.module:ClassName'")
    module_name, class_name = ref.split(":")
    module_name = MOVED_MODULES.get(module_name, module_name)
    if module_name.split(".")[0] in sys.stdlib_module_names:
        raise ArtifactError(f"architecture reference {ref!r}: standard-library modules are refused")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ArtifactError(
            f"architecture {ref!r}: cannot import module {module_name!r} ({exc}); is the folder that holds it "
            "on PYTHONPATH (for the CLI and for Dagster)?"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ArtifactError(f"architecture {ref!r}: module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ArtifactError(
            f"architecture {ref!r}: {module_name}.{class_name} is not a torch.nn.Module subclass"
        )
    return cls


def architecture_class(arch: dict[str, Any]) -> type[nn.Module]:
    """The class an artifact's architecture declares: by reference, or by name from :data:`ARCHITECTURES`."""
    if "ref" in arch:
        return import_architecture(arch["ref"])
    cls = ARCHITECTURES.get(arch.get("name"))  # type: ignore[arg-type]
    if cls is None:
        raise ArtifactError(
            f"unknown architecture {arch.get('name')!r}; known: {sorted(ARCHITECTURES)}, or declare "
            "{'ref': 'package.module:ClassName'}"
        )
    return cls


class SqueezeLast(nn.Module):
    """Scores of a model that returns shape [n, 1], as the [n] the scorer writes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).squeeze(-1)


def save_artifact(
    module: nn.Module,
    path: Path,
    *,
    architecture: dict[str, Any],
    inputs: Sequence[dict[str, str]],
    output: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``module`` as a self-describing safetensors artifact."""
    architecture_class(architecture)
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    header = {
        "format": ARTIFACT_FORMAT,
        "architecture": json.dumps(architecture),
        "inputs": json.dumps(list(inputs)),
        "output": json.dumps(output),
        "torch_version": torch.__version__,
    }
    if extra:
        header["extra"] = json.dumps(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return path


def read_header(path: Path) -> dict[str, Any]:
    """The parsed header of an artifact (architecture, inputs, output, extra), without loading tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a safetensors model artifact ({exc})") from exc
    if raw.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: header format {raw.get('format')!r}, expected {ARTIFACT_FORMAT!r}")
    try:
        return {
            "format": raw["format"],
            "architecture": json.loads(raw["architecture"]),
            "inputs": json.loads(raw["inputs"]),
            "output": json.loads(raw["output"]),
            "torch_version": raw.get("torch_version"),
            "extra": json.loads(raw.get("extra", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: malformed artifact header ({exc})") from exc


def load_artifact(path: Path) -> nn.Module:
    """Build the declared architecture and load the artifact's tensors into it (eval mode, CPU)."""
    header = read_header(path)
    arch = header["architecture"]
    try:
        cls = architecture_class(arch)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    module = cls(**arch.get("params", {}))
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: tensors do not match architecture {arch}: {exc}") from exc
    if header["output"].get("shape") == "n,1":
        return SqueezeLast(module).eval()
    return module.eval()
