"""Small PNG plots for materialization metadata (matplotlib, Agg backend; no dagster here).

The UI renders markdown metadata, including an image embedded as a data URI, so a plot travels with the
materialization it describes and needs no file server. Plots are kept to a few KB.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after selecting the backend
import numpy as np  # noqa: E402


def score_histogram_png(
    scores: np.ndarray,
    reference: np.ndarray | None,
    *,
    title: str,
    bins: int = 25,
    value_range: tuple[float, float] = (0.0, 1.0),
    size: tuple[float, float] = (4.0, 2.5),
    dpi: int = 72,
) -> bytes:
    """Density histogram of a partition's scores over the reference scores, as PNG bytes."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        low, high = value_range
        if not (np.isfinite(low) and np.isfinite(high)):  # an unbounded output: span the data instead
            both = np.concatenate([scores, np.asarray(reference if reference is not None else [], float)])
            low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
        if reference is not None and len(reference):
            ax.hist(reference, bins=edges, density=True, color="#9aa5b1", alpha=0.6, label="reference")
        if scores.size:
            ax.hist(
                scores, bins=edges, density=True, histtype="step", color="#4f43dd", lw=1.6, label="partition"
            )
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("score", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, frameon=False)
        fig.tight_layout(pad=0.4)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that embeds ``png`` inline, as the Dagster UI renders it."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
