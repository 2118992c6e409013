"""Small PNG plots for materialization metadata (matplotlib, Agg backend; no dagster here).

The UI renders markdown metadata, including an image embedded as a data URI, so a plot travels with the
materialization it describes and needs no file server. The UI shows markdown inline only below 1,000
characters (longer markdown hides behind a "Show Markdown" button), so a plot is a sparkline: no text,
four colours, about 500 bytes; its legend is the markdown around it.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use (not when a run process loads the
    code location: about 0.8 s that only a step drawing a plot needs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


INLINE_MARKDOWN_LIMIT = 1000  # characters the Dagster UI shows inline in a metadata table
REFERENCE_COLOR = "#b8c0c8"
PARTITION_COLOR = "#4f43dd"


def bin_shares_png(
    partition: np.ndarray, reference: np.ndarray | None = None, *, size_px: tuple[int, int] = (320, 90)
) -> bytes:
    """Share of rows per bin: the reference as grey bars, the partition as a blue step line, as PNG bytes."""
    partition = np.asarray(partition, dtype=np.float64)
    x = np.arange(partition.size + 1)
    dpi = 80
    from PIL import Image

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    try:
        if reference is not None and len(reference):
            ax.bar(x[:-1], reference, width=0.9, align="edge", color=REFERENCE_COLOR, antialiased=False)
        ax.stairs(partition, x, color=PARTITION_COLOR, lw=1.5)
        ax.axhline(0, color="#555555", lw=1)
        ax.set_xlim(0, partition.size)
        top = max(
            float(partition.max(initial=0)),
            float(np.max(reference, initial=0)) if reference is not None else 0,
        )
        ax.set_ylim(0, top * 1.05 or 1)
        ax.axis("off")
        fig.subplots_adjust(0, 0.02, 1, 1)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=4)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, bits=2)
    return out.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that embeds ``png`` inline, as the Dagster UI renders it."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
