"""Images sent inline as PNG data URIs instead of through Streamlit's media file manager.

Why: ``st.image`` stores every image in the server's in-memory media manager and the browser
fetches it by URL afterwards; with many sessions rerunning at once a browser can ask for a file a
newer rerun has already dropped (404, "image source error"). A data URI travels inside the same
websocket message as the page element, so it cannot go missing, and there is one request fewer
per image. PNG, not JPEG: the tiles are 64×64 binary or flat-shaded, where PNG is both smaller
and exact (measured in docs/serving.md). Tiles are sent at their own resolution and enlarged by
the browser with ``image-rendering: pixelated``, so a slider step sends about 1 kB.
"""

from __future__ import annotations

import base64
import html

import numpy as np

from disviz.app.figures import png_bytes

PIXELATED = "image-rendering: pixelated; image-rendering: crisp-edges;"


def data_uri(image: np.ndarray) -> str:
    """A PNG data URI of ``image`` (what an ``<img src=…>`` can show without a second request)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def img_html(uri: str, alt: str, width: int | None = None, caption: str | None = None, pixelated: bool = True) -> str:
    """An ``<img>`` (optionally with a caption) for ``st.html``; ``width`` in CSS pixels (None: natural size)."""
    style = "max-width: 100%; height: auto;" + (PIXELATED if pixelated else "")
    if width is not None:
        style += f" width: {int(width)}px;"
    tag = f'<img src="{uri}" alt="{html.escape(alt, quote=True)}" style="{style}">'
    if caption:
        cap = html.escape(caption)
        tag = (
            f'<figure style="margin: 0">{tag}<figcaption style="font-size: 0.85rem; color: rgba(49, 51, 63, 0.6);">'
            f"{cap}</figcaption></figure>"
        )
    return tag
