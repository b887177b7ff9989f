"""An independent numpy implementation of PDQ, written from Meta's algorithm
description and its reference Python hasher (ThreatExchange
pdq/python/pdqhashing/hasher/pdq_hasher.py, Hash256 in types/hash256.py), to
check the library we ship (pdqhash, which wraps Meta's C++) against: same
bits, same bit order, same hex text, same quality, same eight dihedral
hashes. Test code only.

Steps (for an RGB uint8 image of numRows x numCols):
1. luma = 0.299 R + 0.587 G + 0.114 B
2. Jarosz tent filter: twice, a box filter along rows (window
   ceil(numCols / 128)) then along columns (window ceil(numRows / 128)); the
   reference's box keeps its running window to the left/right edges as
   written out in box1DFloat (output i averages inputs
   max(0, i + half - w) .. min(n, i + half) - 1, half = (w + 2) // 2)
3. decimate to 64x64: sample [int((i + 0.5) * numRows / 64), int((j + 0.5) * numCols / 64)]
4. quality: sum of |int((u - v) * 100 / 255)| over vertical and horizontal
   neighbours of the 64x64, / 90, capped at 100
5. B = D A D^T with D[i][j] = cos(pi / 128 * (i + 1) * (2j + 1)), i < 16, j < 64
6. bit k (k = 16 i + j) set when B[i][j] > the median (Torben's: the 128th
   smallest of the 256); bit k lives in 16-bit word k // 16 at bit k % 16,
   and the hex text is words 15 down to 0, four digits each
7. dihedrals from B (pdq_hasher.py's dct16OriginalTo* functions)
"""
from __future__ import annotations

import numpy as np


def _box_along_last_axis(a: np.ndarray, window: int) -> np.ndarray:
    n = a.shape[-1]
    half = (window + 2) // 2
    i = np.arange(n)
    lo = np.maximum(0, i + half - window)
    hi = np.minimum(n, i + half)
    cumulative = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)
    return (cumulative[..., hi] - cumulative[..., lo]) / (hi - lo)


def _window(dimension: int) -> int:
    return (dimension + 127) // 128


def dct16(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """The 16x16 DCT corner and the quality of an RGB uint8 image."""
    rgb = rgb.astype(np.float64)
    luma = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    rows, cols = luma.shape
    for _ in range(2):
        luma = _box_along_last_axis(luma, _window(cols))
        luma = _box_along_last_axis(luma.T, _window(rows)).T
    ri = ((np.arange(64) + 0.5) * rows / 64).astype(int)
    ci = ((np.arange(64) + 0.5) * cols / 64).astype(int)
    a = luma[np.ix_(ri, ci)]
    gradients = np.abs(np.trunc((a[:-1, :] - a[1:, :]) * 100 / 255)).sum() \
        + np.abs(np.trunc((a[:, :-1] - a[:, 1:]) * 100 / 255)).sum()
    quality = min(int(gradients / 90), 100)
    d = np.cos(np.pi / 128 * np.arange(1, 17)[:, None] * (2 * np.arange(64)[None, :] + 1))
    return d @ a @ d.T, quality


def dihedral_dcts(b: np.ndarray) -> list[np.ndarray]:
    """The reference's eight 16x16 DCTs: original, rotate90, rotate180,
    rotate270, flipx, flipy, flip_plus1, flip_minus1."""
    i = np.arange(16)[:, None]
    j = np.arange(16)[None, :]
    odd_i = (i & 1) == 1
    odd_j = (j & 1) == 1
    odd_sum = ((i + j) & 1) == 1
    return [
        b,
        np.where(odd_j, b, -b).T,      # B[j][i] = A[i][j] if j odd else -A[i][j]
        np.where(odd_sum, -b, b),
        np.where(odd_i, b, -b).T,
        np.where(odd_i, b, -b),
        np.where(odd_j, b, -b),
        b.T,
        np.where(odd_sum, -b, b).T,
    ]


def hash_hex(b: np.ndarray) -> str:
    median = np.sort(b.ravel())[127]
    bits = (b.ravel() > median).astype(int)
    words = [int(sum(bits[16 * w + k] << k for k in range(16))) for w in range(16)]
    return "".join(f"{words[w]:04x}" for w in range(15, -1, -1))


def reference_hashes(rgb: np.ndarray) -> tuple[list[str], int]:
    """The eight dihedral hashes (hex) and the quality, per the reference."""
    b, quality = dct16(rgb)
    return [hash_hex(x) for x in dihedral_dcts(b)], quality
