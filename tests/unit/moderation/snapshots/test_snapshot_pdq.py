"""PDQ: the shipped library (pdqhash, Meta's C++) against an independent numpy
implementation of the reference algorithm, bit for bit; the hex text form;
the dihedral hashes against really rotated and flipped images; quality."""
from __future__ import annotations

import numpy as np
import pytest

from services.moderation.snapshots import DIHEDRALS, InvalidHash, PdqHashes, decode_snapshot, hamming, parse_hex, pdq_hashes
from tests.unit.moderation.snapshots.pdq_reference import reference_hashes
from tests.unit.moderation.snapshots.snapshot_helpers import fixture_bytes, fixture_rgb


def _hexes(hashes: PdqHashes) -> list[str]:
    return [row.tobytes().hex() for row in hashes.hashes]


@pytest.mark.parametrize("name", ["scene.jpg", "blobs.jpg"])
def test_all_eight_hashes_and_quality_equal_the_reference_algorithm(name):
    rgb = decode_snapshot(fixture_bytes(name)).pdq_rgb
    expected, quality = reference_hashes(rgb)
    got = pdq_hashes(rgb)
    assert _hexes(got) == expected
    assert got.quality == quality
    assert got.hex == expected[0]


@pytest.mark.parametrize("shape", [(240, 320), (97, 131), (512, 300), (31, 64), (480, 640)])
def test_reference_agreement_on_odd_sizes(shape):
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    expected, quality = reference_hashes(rgb)
    got = pdq_hashes(rgb)
    assert _hexes(got) == expected
    assert got.quality == quality


def test_hex_is_the_reference_text_form():
    """Word w[15] first: bit 255 is the top bit of the first hex digit."""
    got = pdq_hashes(fixture_rgb("scene.jpg"))
    assert len(got.hex) == 64 and got.hex == got.hex.lower()
    assert parse_hex(got.hex) == got.hashes[0].tobytes()
    assert PdqHashes.from_hex([got.hex]).hex == got.hex


# For each dihedral name: the numpy transform of the image whose own hash it predicts.
TRANSFORMS = {
    "rotate90": lambda a: np.rot90(a, 1),
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, 3),
    "flipx": lambda a: a[::-1],
    "flipy": lambda a: a[:, ::-1],
    "flip_plus1": lambda a: a.transpose(1, 0, 2),
    "flip_minus1": lambda a: np.rot90(a, 2).transpose(1, 0, 2),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_dihedral_hash_is_the_hash_of_the_transformed_image(name):
    rgb = fixture_rgb("scene.jpg")
    hashes = pdq_hashes(rgb).dihedral_hex()
    transformed = pdq_hashes(np.ascontiguousarray(TRANSFORMS[name](rgb))).hex
    distances = {other: hamming(transformed, value) for other, value in hashes.items()}
    # Close to the named one (the decimation grid is not exactly symmetric,
    # so a few bits differ), far from every other.
    assert distances[name] <= 16, distances
    assert all(d > 64 for other, d in distances.items() if other != name), distances


def test_dihedral_names_follow_the_reference_order():
    assert DIHEDRALS == ("original", "rotate90", "rotate180", "rotate270",
                         "flipx", "flipy", "flip_plus1", "flip_minus1")


def test_quality_is_high_for_a_detailed_frame_and_zero_for_flat_ones():
    assert pdq_hashes(fixture_rgb("scene.jpg")).quality == 100
    assert pdq_hashes(fixture_rgb("black.jpg")).quality == 0
    flat = pdq_hashes(fixture_rgb("flat_gray.png"))
    assert flat.quality == 0
    assert flat.hex != "0" * 64  # a flat frame still gets a hash: noise, hence the quality gate


def test_parse_hex_and_hamming():
    a = "f" * 64
    assert parse_hex("  " + a.upper() + "\n") == b"\xff" * 32
    assert hamming(a, "0" * 64) == 256
    assert hamming(a, "7" + "f" * 63) == 1
    assert hamming(b"\x00" * 32, "0" * 63 + "3") == 2
    for bad in ["f" * 63, "f" * 65, "g" * 64, "", "0x" + "f" * 62]:
        with pytest.raises(InvalidHash):
            parse_hex(bad)
    with pytest.raises(InvalidHash):
        hamming(b"\x00" * 31, a)


def test_pdq_hashes_wants_an_rgb_uint8_array():
    with pytest.raises(ValueError):
        pdq_hashes(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        pdq_hashes(np.zeros((10, 10, 3), np.float32))
