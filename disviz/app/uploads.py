"""Uploaded base images: decoded safely into the model's input format, or refused clearly."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from disviz.core.errors import DatasetError

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "UploadError", "load_upload"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096


class UploadError(DatasetError):
    """An uploaded base image cannot be used (wrong type, corrupt, too large)."""


def _to_8bit(img: Any) -> Any:
    """16-bit / 32-bit integer and float images scaled to 8 bits by their bit depth; Pillow's own
    ``convert('L')`` clamps 16-bit values at 255, which turned a 16-bit PNG all white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)  # [H, W]
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    if img.mode == "I":  # 32-bit int: PNGs of 16-bit depth often decode to this mode
        arr = np.asarray(img, dtype=np.int64)
        top = 65535 if arr.max(initial=0) > 255 else 255
        return Image.fromarray((np.clip(arr, 0, top) * 255 // top).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = 1.0 if arr.max(initial=0) <= 1.0 else (255.0 if arr.max() <= 255 else 65535.0)
        return Image.fromarray((np.clip(arr / top, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    return img


def load_upload(data: bytes, channels: int, name: str = "upload", max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode an uploaded image into the model's input: uint8 [64, 64, C].

    Refuses empty, huge, corrupt or non-image files with a clear ``UploadError``. Decoding goes
    through Pillow (no pickles); the image is centre-cropped to a square and resized to 64x64;
    binary datasets (C=1) get a greyscale image thresholded at 50%.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(f"{name} is empty; upload a PNG or JPEG image")
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {len(data) / 1e6:.1f} MB; upload an image under {max_bytes / 1e6:.0f} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise UploadError(f"{name} is {img.width}x{img.height} pixels; upload a smaller image (≤ 4096x4096)")
            img.load()
            img = _to_8bit(img)
            img = img.convert("L" if channels == 1 else "RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((64, 64), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except UploadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(f"{name} is not a readable image ({exc}); upload a PNG or JPEG file") from None
    if channels == 1:
        arr = np.where(arr >= 128, 255, 0).astype(np.uint8)[:, :, None]
    return arr
