"""Small PNG plots for materialization metadata, drawn with Pillow (no dagster here).

The UI renders markdown metadata, including an image embedded as a data URI, so a plot travels with the
materialization it describes and needs no file server. The UI shows markdown inline only below 1,000
characters (longer markdown hides behind a "Show Markdown" button), so a plot is a sparkline: no text,
four colours, about 500 bytes; its legend is the markdown around it. Drawn straight onto a 4-colour
palette image (about 1 ms a plot; a matplotlib figure took about 75 ms, every partition of a chunk).
"""

from __future__ import annotations

import base64
import io

import numpy as np

INLINE_MARKDOWN_LIMIT = 1000  # characters the Dagster UI shows inline in a metadata table
REFERENCE_COLOR = "#b8c0c8"
PARTITION_COLOR = "#4f43dd"
AXIS_COLOR = "#555555"
_PALETTE = ["#ffffff", REFERENCE_COLOR, PARTITION_COLOR, AXIS_COLOR]  # indexes 0..3 of the image


def bin_shares_png(
    partition: np.ndarray, reference: np.ndarray | None = None, *, size_px: tuple[int, int] = (320, 90)
) -> bytes:
    """Share of rows per bin: the reference as grey bars, the partition as a blue step line, as PNG bytes."""
    from PIL import Image, ImageDraw

    partition = np.nan_to_num(np.asarray(partition, dtype=np.float64))
    ref = None if reference is None or not len(reference) else np.nan_to_num(np.asarray(reference, float))
    width, height = size_px
    n = max(partition.size, 1)
    top = max(float(partition.max(initial=0)), float(ref.max(initial=0)) if ref is not None else 0.0)
    top = top * 1.05 or 1.0
    base = height - 2  # the axis line; bars and the step line sit on it

    def x(i: float) -> float:
        return i * (width - 1) / n

    def y(share: float) -> float:
        return base - share / top * (base - 1)

    image = Image.new("P", size_px, 0)
    image.putpalette([int(c[i : i + 2], 16) for c in _PALETTE for i in (1, 3, 5)])
    draw = ImageDraw.Draw(image)
    if ref is not None:
        for i, share in enumerate(ref):
            if share > 0:
                draw.rectangle((x(i), y(share), x(i + 0.9), base), fill=1)
    steps = []
    for i, share in enumerate(partition):
        steps += [(x(i), y(share)), (x(i + 1), y(share))]
    if steps:
        draw.line(steps, fill=2, width=2)
    draw.line(((0, base), (width - 1, base)), fill=3, width=1)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, bits=2)
    return out.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that embeds ``png`` inline, as the Dagster UI renders it."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
