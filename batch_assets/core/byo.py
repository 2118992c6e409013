"""Bring your own model: a user's trained ``nn.Module`` weights become a registry artifact.

Accepted: a ``weights_only`` state dict (``torch.save(model.state_dict(), "model.pt")``, loaded with
``torch.load(weights_only=True)``) or a ``.safetensors`` file of the same tensors, plus an architecture
reference ``package.module:ClassName`` and JSON init kwargs. Code is code (imported from the user's
package), weights are data (never unpickled beyond plain tensors). Refused, with the reason: TorchScript
archives (a TorchScript program runs arbitrary TorchScript ops when loaded and called) and
``torch.export`` programs (torch 2.13's ``torch.export.load`` unpickles parts of the archive with
``weights_only=False``, i.e. can run arbitrary Python).

The manifest's inputs and reference statistics come from a reference dataset the user names (Parquet), and
the model must score a few of its rows, returning one score per row, before anything is registered.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from batch_assets.core.drift import reference_stats
from batch_assets.core.model_format import (
    ARTIFACT_FORMAT,
    ArtifactError,
    import_architecture,
    save_artifact,
)

REFERENCE_MAX_ROWS = 200_000
SIGNATURE_ROWS = 8

REFUSED = {
    "torchscript": (
        "is a TorchScript archive: refused, because loading and calling it runs the TorchScript program inside "
        "it. Save the weights instead: torch.save(model.state_dict(), 'model.pt'), and pass the class with "
        "--architecture package.module:ClassName"
    ),
    "exported_program": (
        "is a torch.export program (.pt2): refused, because torch.export.load in torch 2.13 unpickles parts "
        "of the archive with weights_only=False, which can run arbitrary code. Save the weights instead: "
        "torch.save(model.state_dict(), 'model.pt'), and pass the class with --architecture "
        "package.module:ClassName"
    ),
}


UNKNOWN = (
    "not a safetensors model artifact, nor a state dict (torch.save), .safetensors, TorchScript or "
    "torch.export file"
)


class ModelImportError(ArtifactError):
    """A user model that cannot be registered; the message names the feature, tensor or file at fault."""


def detect_format(path: Path) -> str:
    """``artifact`` (a batch-assets artifact), ``safetensors``, ``torchscript``, ``exported_program``,
    ``state_dict`` (a ``torch.save`` file: it must load with ``torch.load(weights_only=True)``) or ``unknown``."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "exported_program"
        if any("/code/" in n or n.startswith("code/") for n in names) or any(
            n.endswith("constants.pkl") for n in names
        ):
            return "torchscript"
        return "state_dict"
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        with open(path, "rb") as f:
            return "state_dict" if f.read(1) == b"\x80" else "unknown"  # a pickle's PROTO opcode
    return "artifact" if metadata.get("format") == ARTIFACT_FORMAT else "safetensors"


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file, loaded without executing pickled code."""
    fmt = detect_format(path)
    if fmt in REFUSED:
        raise ModelImportError(f"{path} {REFUSED[fmt]}")
    if fmt == "unknown":
        raise ModelImportError(f"{path}: {UNKNOWN}")
    if fmt in ("safetensors", "artifact"):
        return load_file(str(path), device="cpu")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ModelImportError(
            f"{path} is not a weights_only state dict (torch.load(weights_only=True) refused it: "
            f"{str(exc).splitlines()[0]}). Save it with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelImportError(f"{path} holds {type(loaded).__name__}, not a state dict of tensors")
    return dict(loaded)


def build_module(
    architecture: str, init_kwargs: Mapping[str, Any], weights: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Instantiate the referenced class with ``init_kwargs`` and load ``weights`` into it (strict)."""
    cls = import_architecture(architecture)
    try:
        module = cls(**init_kwargs)
    except TypeError as exc:
        raise ModelImportError(f"{architecture}(**{json.dumps(dict(init_kwargs))}) failed: {exc}") from exc
    try:
        module.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise ModelImportError(f"the weights do not fit {architecture}: {exc}") from exc
    return module.eval()


def read_reference(
    path: Path,
    *,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    max_rows: int = REFERENCE_MAX_ROWS,
) -> tuple[list[str], np.ndarray]:
    """Feature names and a float32 matrix from a Parquet file or folder (searched recursively).

    Without ``features``: every numeric column except ``exclude`` (keys, partition columns), in file order.
    """
    try:
        dataset = pads.dataset(path, format="parquet")
        schema = dataset.schema
    except (pa.ArrowInvalid, OSError, FileNotFoundError) as exc:
        raise ModelImportError(f"reference dataset {path}: not readable Parquet ({exc})") from exc
    if features is None:
        features = [
            f.name
            for f in schema
            if f.name not in exclude and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        ]
        if not features:
            raise ModelImportError(f"reference dataset {path} has no numeric columns besides {list(exclude)}")
    for name in features:
        if name not in schema.names:
            raise ModelImportError(
                f"feature {name!r} is not a column of the reference dataset {path} (has: {', '.join(schema.names)})"
            )
        t = schema.field(name).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            raise ModelImportError(
                f"feature {name!r} has type {t} in the reference dataset {path}, expected a number"
            )
    table = dataset.head(max_rows, columns=list(features))
    if table.num_rows == 0:
        raise ModelImportError(f"reference dataset {path} has no rows")
    x = np.column_stack(
        [table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in features]
    ).astype(np.float32)
    return list(features), x


def check_signature(module: nn.Module, features: Sequence[str], x: np.ndarray) -> str:
    """Score a few reference rows; returns the output shape ``"n"`` or ``"n,1"``, else names the mismatch."""
    features = list(features)
    declared = getattr(module, "feature_names", None)
    if declared is not None:
        missing = [f for f in declared if f not in features]
        extra = [f for f in features if f not in declared]
        if missing or extra or list(declared) != features:
            detail = (
                f"missing feature {missing[0]!r}"
                if missing
                else f"unexpected feature {extra[0]!r}"
                if extra
                else "order differs"
            )
            raise ModelImportError(
                f"model declares feature_names {list(declared)} but is given {features}: {detail}"
            )
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if first is not None and first.in_features != len(features):
        if len(features) > first.in_features:
            hint = f"features beyond its width: {', '.join(repr(f) for f in features[first.in_features :])}"
        else:
            hint = "a feature is missing from the list given"
        raise ModelImportError(
            f"model's first layer takes {first.in_features} inputs but {len(features)} features are given "
            f"({', '.join(features)}); {hint}"
        )
    finite = x[np.isfinite(x).all(axis=1)][:SIGNATURE_ROWS]
    rows = finite if len(finite) else np.zeros((2, len(features)), dtype=np.float32)
    try:
        with torch.inference_mode():
            out = module(torch.from_numpy(np.ascontiguousarray(rows)))
    except Exception as exc:  # noqa: BLE001 - whatever the user's forward raises, it cannot score these inputs
        raise ModelImportError(
            f"model cannot score {len(features)} features ({', '.join(features)}): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise ModelImportError(
            f"model returns {type(out).__name__} {getattr(out, 'dtype', '')}, expected a float tensor"
        )
    n = len(rows)
    if tuple(out.shape) == (n,):
        return "n"
    if tuple(out.shape) == (n, 1):
        return "n,1"
    raise ModelImportError(
        f"model returns shape {tuple(out.shape)} for {n} rows; the scorer writes one score per row, so it must "
        f"return [{n}] or [{n}, 1]"
    )


def build_artifact(
    weights_path: Path,
    out_path: Path,
    *,
    architecture: str,
    init_kwargs: Mapping[str, Any],
    reference: Path,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    output_range: tuple[float, float] | None = None,
    description: str = "",
) -> Path:
    """Validate a user model against its reference dataset and write it as a registry artifact."""
    module = build_module(architecture, init_kwargs, load_weights(weights_path))
    if features is None and getattr(module, "feature_names", None) is not None:
        features = list(module.feature_names)
    features, x = read_reference(reference, features=features, exclude=exclude)
    shape = check_signature(module, features, x)
    scores = []
    with torch.inference_mode():
        for start in range(0, len(x), 65_536):
            out = module(torch.from_numpy(np.ascontiguousarray(x[start : start + 65_536])))
            scores.append(out.reshape(-1).float().numpy())
    output: dict[str, Any] = {"name": "score", "dtype": "float32", "shape": shape}
    if output_range is not None:
        output["range"] = [float(output_range[0]), float(output_range[1])]
    return save_artifact(
        module,
        out_path,
        architecture={"ref": architecture, "params": dict(init_kwargs)},
        inputs=[{"name": c, "dtype": "float32"} for c in features],
        output=output,
        extra={
            "description": description,
            "reference": {
                "rows": int(len(x)),
                "dataset": str(reference),
                "features": {c: reference_stats(x[:, j]) for j, c in enumerate(features)},
                "score": reference_stats(np.concatenate(scores)),
            },
            "training": {"reference_dataset": str(reference), "source_weights": str(weights_path)},
        },
    )
