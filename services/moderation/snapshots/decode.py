"""Turning the bytes a client sent into pixels, safely.

A snapshot is untrusted input: whatever it holds, decoding either gives an
RGB array within the limits or raises a SnapshotError with a short `reason`
(bounded, fit for a metric label or a dead-letter header) and a message for
the log. Size limits are checked before decoding: the byte count first, then
the pixel count from the image header, so a small file that claims a huge
image (a decompression bomb) is refused without being decoded.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from services.moderation.snapshots.pdq import REFERENCE_MAX_SIDE

# What a browser canvas or a phone encoder sends; others are refused unread.
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP")


class SnapshotError(ValueError):
    """A snapshot that cannot be analyzed. `reason` is one of a fixed set of
    short codes: empty, too_large, not_an_image, too_many_pixels, too_small,
    corrupt."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SnapshotTooLarge(SnapshotError):
    """Too many bytes or too many pixels."""


class InvalidSnapshot(SnapshotError):
    """Not an image we read, truncated, corrupt, empty or too small."""


@dataclass(frozen=True)
class SnapshotLimits:
    max_bytes: int = 256 * 1024
    max_pixels: int = 1_000_000  # width x height; 320x240 is 76,800
    max_side: int = 2048     # a padded square of this side is what the classifier resizes
    min_side: int = 16
    formats: tuple[str, ...] = DEFAULT_FORMATS

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1 or self.max_side < 1:
            raise ValueError("snapshot limits must be positive")
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError("min_side must be between 1 and max_side")
        if not self.formats:
            raise ValueError("at least one image format must be accepted")


@dataclass(frozen=True)
class DecodedSnapshot:
    rgb: np.ndarray      # (height, width, 3) uint8, as sent
    pdq_rgb: np.ndarray  # the same, shrunk to fit 512x512 when larger (PDQ's input)
    width: int
    height: int
    format: str


def decode_snapshot(data: bytes | bytearray | memoryview, limits: SnapshotLimits = SnapshotLimits()) -> DecodedSnapshot:
    """Decode one snapshot; raises SnapshotError (never anything else for bad bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidSnapshot("not_an_image", f"a snapshot is bytes, not {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise InvalidSnapshot("empty", "empty snapshot")
    if size > limits.max_bytes:
        raise SnapshotTooLarge("too_large", f"snapshot of {size} bytes, at most {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between its own two bomb limits;
            # ours are far lower and checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)), formats=list(limits.formats))
    except UnidentifiedImageError:
        raise InvalidSnapshot(
            "not_an_image", f"not an image in an accepted format ({', '.join(limits.formats)})") from None
    except Image.DecompressionBombError:
        raise SnapshotTooLarge("too_many_pixels", "image header claims far too many pixels") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any decoder failure is bad input
        raise InvalidSnapshot("corrupt", f"unreadable image header: {type(exc).__name__}: {exc}") from None

    with image:
        width, height = image.size
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            raise SnapshotTooLarge(
                "too_many_pixels",
                f"{width}x{height} image, at most {limits.max_pixels} pixels and {limits.max_side} on a side")
        if min(width, height) < limits.min_side:
            raise InvalidSnapshot("too_small", f"{width}x{height} image, at least {limits.min_side} on a side")
        fmt = image.format or "?"
        try:
            # First frame only for animated WebP/PNG; palette, grey, CMYK and
            # alpha all become plain RGB (alpha dropped).
            image.load()
            rgb_image = image.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds on fuzzed input
            raise InvalidSnapshot("corrupt", f"truncated or corrupt {fmt} image: {type(exc).__name__}: {exc}") from None

    rgb = np.asarray(rgb_image, dtype=np.uint8)
    if max(width, height) > REFERENCE_MAX_SIDE:
        small = rgb_image.copy()
        small.thumbnail((REFERENCE_MAX_SIDE, REFERENCE_MAX_SIDE))
        pdq_rgb = np.asarray(small, dtype=np.uint8)
    else:
        pdq_rgb = rgb
    return DecodedSnapshot(rgb=rgb, pdq_rgb=pdq_rgb, width=width, height=height, format=fmt)
