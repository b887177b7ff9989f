"""Shared by the snapshot tests: fixture files and hash helpers."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "snapshots"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_rgb(name: str) -> np.ndarray:
    with Image.open(FIXTURES / name) as image:
        return np.asarray(image.convert("RGB"))


def encode(rgb: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format=fmt, **options)
    return out.getvalue()


def random_hashes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def flip_bits(value: bytes | np.ndarray, count: int, seed: int = 0) -> bytes:
    """`value` with exactly `count` distinct bits flipped."""
    data = bytearray(bytes(value))
    for bit in np.random.default_rng(seed).choice(256, size=count, replace=False):
        data[int(bit) // 8] ^= 1 << (int(bit) % 8)
    return bytes(data)


def brute_force(bank: np.ndarray, query: np.ndarray, max_distance: int) -> dict[int, int]:
    """{bank row: smallest distance to any query row} within max_distance."""
    words = bank.view(np.uint64)
    out: dict[int, int] = {}
    for row in query.view(np.uint64):
        dist = np.bitwise_count(words ^ row).astype(np.int64).sum(axis=1)
        for i in np.nonzero(dist <= max_distance)[0].tolist():
            out[i] = min(out.get(i, 999), int(dist[i]))
    return out
