"""PDQ hashes of video snapshots: Meta's perceptual hash, with its eight
dihedral variants and its quality metric.

The hashing itself is Meta's reference C++ (ThreatExchange `pdq/cpp`), through
the `pdqhash` bindings: luminance (0.299 R + 0.587 G + 0.114 B), a two-pass
Jarosz tent filter, decimation to 64x64, the 16x16 corner of the DCT, one bit
per coefficient above the median, and the seven other dihedral hashes derived
from the same DCT (sign flips and transposes), as the reference does. Images
larger than 512 px on a side are first shrunk to fit 512x512 with Pillow's
`thumbnail`, as the reference Python hasher does (the C++ CLI shrinks them
too, with CImg).

Hex strings are the reference's `Hash256` text form: 64 hex digits, the
16-bit word w[15] first; bit k (word k // 16, bit k % 16) is set when DCT
coefficient k (row-major in the 16x16) is above the median. Hash lists from
other PDQ users are in this form, so a bank loaded from a file compares with
what we compute.

Inside this package a hash is 32 bytes in that same order (`bytes.fromhex` of
the hex string); Hamming distance does not care about byte order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HASH_BITS = 256
HASH_BYTES = 32
HEX_DIGITS = 64

# The order of pdqhash.compute_dihedral and of the reference's
# pdqDihedralHash256esFromFloatLuma. In numpy terms, for an image array `a`,
# the hash named here is (up to a few bits) the original hash of:
#   rotate90    np.rot90(a, 1)   (a quarter turn counter-clockwise)
#   rotate180   np.rot90(a, 2)
#   rotate270   np.rot90(a, 3)   (a quarter turn clockwise)
#   flipx       a[::-1]          (upside down: mirrored about the x axis)
#   flipy       a[:, ::-1]       (mirrored left to right, about the y axis)
#   flip_plus1  a.transpose      (mirrored about the main diagonal)
#   flip_minus1 np.rot90(a, 2).transpose (mirrored about the other diagonal)
# A bank hash within distance of the `rotate90` hash of a snapshot is an image
# that the snapshot shows turned a quarter counter-clockwise.
DIHEDRALS: tuple[str, ...] = (
    "original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flip_plus1", "flip_minus1")

# ThreatExchange's recommendation: discard hashes of quality 49 or less.
DEFAULT_MIN_QUALITY = 50
# Images larger than this on a side are shrunk before hashing (see above).
REFERENCE_MAX_SIDE = 512


class InvalidHash(ValueError):
    """A string that is not a 64-digit hex PDQ hash."""


def parse_hex(text: str) -> bytes:
    """The 32 bytes of a 64-digit hex PDQ hash (either case, surrounding
    whitespace ignored). Raises InvalidHash."""
    if not isinstance(text, str):
        raise InvalidHash(f"a PDQ hash is a string of {HEX_DIGITS} hex digits, not {type(text).__name__}")
    text = text.strip()
    if len(text) != HEX_DIGITS:
        raise InvalidHash(f"a PDQ hash has {HEX_DIGITS} hex digits, this has {len(text)}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidHash("a PDQ hash has only hex digits (0-9, a-f)") from None


def to_bytes(value: str | bytes) -> bytes:
    """A hash given as hex or as its 32 bytes, as 32 bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if len(value) != HASH_BYTES:
            raise InvalidHash(f"a PDQ hash is {HASH_BYTES} bytes, this is {len(value)}")
        return value
    return parse_hex(value)


def hamming(a: str | bytes, b: str | bytes) -> int:
    """Hamming distance of two hashes (hex or bytes)."""
    return (int.from_bytes(to_bytes(a), "big") ^ int.from_bytes(to_bytes(b), "big")).bit_count()


@dataclass(frozen=True)
class PdqHashes:
    """The eight dihedral PDQ hashes of one image and its quality (0-100).

    `hashes` is an (8, 32) uint8 array, rows in DIHEDRALS order; row 0 is the
    image's own hash."""

    hashes: np.ndarray
    quality: int

    @property
    def hex(self) -> str:
        """The image's own hash, in the reference hex form."""
        return self.hashes[0].tobytes().hex()

    def dihedral_hex(self) -> dict[str, str]:
        return {name: row.tobytes().hex() for name, row in zip(DIHEDRALS, self.hashes)}

    @classmethod
    def from_hex(cls, hexes: list[str] | tuple[str, ...], quality: int = 100) -> PdqHashes:
        """For tests and tools: hashes given as hex (1 to 8 of them)."""
        if not 1 <= len(hexes) <= len(DIHEDRALS):
            raise ValueError(f"1 to {len(DIHEDRALS)} hashes, not {len(hexes)}")
        rows = np.frombuffer(b"".join(parse_hex(h) for h in hexes), dtype=np.uint8)
        return cls(hashes=rows.reshape(len(hexes), HASH_BYTES).copy(), quality=quality)


def _bits_to_bytes(bits: np.ndarray) -> np.ndarray:
    """pdqhash returns 256 bits from bit 255 down to bit 0: packed most
    significant bit first, that is the reference hex order."""
    return np.packbits(np.asarray(bits, dtype=np.uint8))


def pdq_hashes(rgb: np.ndarray) -> PdqHashes:
    """The eight dihedral hashes and the quality of an RGB image given as an
    (height, width, 3) uint8 array. The image is hashed at the size given:
    shrinking large images first is the caller's part (decode.py does it)."""
    import pdqhash  # the compiled reference code: imported on first use

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"an (height, width, 3) uint8 RGB array, not {rgb.dtype} {rgb.shape}")
    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(rgb))
    rows = np.stack([_bits_to_bytes(v) for v in vectors])
    return PdqHashes(hashes=rows, quality=int(quality))
