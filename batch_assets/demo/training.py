"""Training of the demo risk model and the reference statistics its manifest carries.

The model is trained on the feature table itself (the same SQL that serving reads), so there is no
train/serve skew; standardisation is fitted on the training rows and stored inside the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from batch_assets.core.drift import reference_stats
from batch_assets.core.model_format import TabularMLP, save_artifact


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties get average ranks)."""
    labels = labels.astype(bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def train_risk_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: Sequence[int] = (64, 32),
    epochs: int = 6,
    batch_size: int = 1024,
    lr: float = 2e-3,
    seed: int = 7,
) -> tuple[TabularMLP, dict[str, float]]:
    """Fit a :class:`TabularMLP` on ``x`` (float features) and ``y`` (0/1); deterministic for a seed."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    order = rng.permutation(len(x))
    n_valid = max(1, len(x) // 5)
    valid, train = order[:n_valid], order[n_valid:]

    model = TabularMLP(x.shape[1], hidden)
    xt = torch.from_numpy(x[train])
    model.set_scaling(xt.mean(dim=0), xt.std(dim=0))
    yt = torch.from_numpy(y[train])
    pos_weight = torch.tensor((len(yt) - yt.sum().item()) / max(yt.sum().item(), 1.0)).clamp(max=50.0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    logits_loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(len(xt)))
        for start in range(0, len(xt), batch_size):
            b = perm[start : start + batch_size]
            opt.zero_grad()
            z = model.net((xt[b] - model.mean) / model.scale).squeeze(-1)
            loss = logits_loss(z, yt[b])
            loss.backward()
            opt.step()
    model.eval()
    with torch.inference_mode():
        valid_scores = model(torch.from_numpy(x[valid])).numpy()
    metrics = {
        "valid_auc": roc_auc(y[valid], valid_scores),
        "train_rows": float(len(train)),
        "valid_rows": float(len(valid)),
        "positive_rate": float(y.mean()),
    }
    return model, metrics


def export_model(
    model: TabularMLP,
    path: Path,
    *,
    feature_columns: Sequence[str],
    x_reference: np.ndarray,
    training: dict[str, Any],
    description: str = "",
) -> Path:
    """Write ``model`` as a registry-ready artifact whose header carries inputs, output and reference stats."""
    x_reference = np.asarray(x_reference, dtype=np.float32)
    with torch.inference_mode():
        ref_scores = model(torch.from_numpy(np.ascontiguousarray(x_reference))).numpy()
    hidden = [m.out_features for m in model.net if isinstance(m, nn.Linear)][:-1]
    return save_artifact(
        model,
        path,
        architecture={
            "name": "tabular_mlp",
            "params": {"n_features": len(feature_columns), "hidden": hidden},
        },
        inputs=[{"name": c, "dtype": "float32"} for c in feature_columns],
        output={"name": "score", "dtype": "float32", "range": [0.0, 1.0]},
        extra={
            "description": description,
            "reference": {
                "rows": int(len(x_reference)),
                "features": {c: reference_stats(x_reference[:, j]) for j, c in enumerate(feature_columns)},
                "score": reference_stats(ref_scores),
            },
            "training": training,
        },
    )
