"""Decoding untrusted snapshot bytes: limits checked before decoding, a clear
SnapshotError with a bounded reason for every kind of bad input, and nothing
else raised whatever the bytes."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from services.moderation.snapshots import (
    InvalidSnapshot, SnapshotError, SnapshotLimits, SnapshotTooLarge, decode_snapshot, pdq_hashes)
from tests.unit.moderation.snapshots.pdq_reference import reference_hashes
from tests.unit.moderation.snapshots.snapshot_helpers import encode, fixture_bytes

REASONS = {"empty", "too_large", "not_an_image", "too_many_pixels", "too_small", "corrupt"}


def test_a_client_frame_decodes_to_rgb():
    decoded = decode_snapshot(fixture_bytes("scene.jpg"))
    assert (decoded.width, decoded.height, decoded.format) == (320, 240, "JPEG")
    assert decoded.rgb.shape == (240, 320, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.pdq_rgb is decoded.rgb  # small frames are hashed as they are


@pytest.mark.parametrize("data, error, reason", [
    (b"", InvalidSnapshot, "empty"),
    (fixture_bytes("not_an_image.jpg"), InvalidSnapshot, "not_an_image"),
    (fixture_bytes("truncated.jpg"), InvalidSnapshot, "corrupt"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, InvalidSnapshot, "not_an_image"),  # a broken header
    (encode(np.zeros((8, 8, 3), np.uint8), "PNG"), InvalidSnapshot, "too_small"),
    (encode(np.zeros((20, 20, 3), np.uint8), "GIF"), InvalidSnapshot, "not_an_image"),
])
def test_bad_input_raises_a_clear_snapshot_error(data, error, reason):
    with pytest.raises(error) as caught:
        decode_snapshot(data)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_not_bytes_is_refused():
    with pytest.raises(InvalidSnapshot):
        decode_snapshot("a string")  # type: ignore[arg-type]


def test_too_many_bytes_is_refused_before_anything_is_read():
    with pytest.raises(SnapshotTooLarge) as caught:
        decode_snapshot(b"\xff\xd8" + b"\x00" * (256 * 1024))
    assert caught.value.reason == "too_large"
    assert "262146 bytes, at most 262144" in str(caught.value)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds one compressed row: a bomb
    in miniature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (3 * width + 1))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(1001, 1000), (5000, 20), (60000, 60000)])
def test_too_many_pixels_is_refused_from_the_header(width, height):
    data = _png_header_only(width, height)
    assert len(data) < 256 * 1024
    with pytest.raises(SnapshotTooLarge) as caught:
        decode_snapshot(data)
    assert caught.value.reason == "too_many_pixels"


def test_limits_are_configurable():
    small = SnapshotLimits(max_bytes=1000)
    with pytest.raises(SnapshotTooLarge):
        decode_snapshot(fixture_bytes("scene.jpg"), small)
    with pytest.raises(InvalidSnapshot):
        decode_snapshot(fixture_bytes("scene.jpg"), SnapshotLimits(formats=("PNG",)))
    with pytest.raises(ValueError):
        SnapshotLimits(min_side=0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16"])
def test_other_pixel_modes_become_rgb(mode):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    image = image.convert(mode) if mode != "I;16" else image.convert("L").convert("I;16")
    out = io.BytesIO()
    image.save(out, format="PNG")
    decoded = decode_snapshot(out.getvalue())
    assert decoded.rgb.shape == (40, 50, 3)


def test_large_frames_are_shrunk_to_512_for_pdq_as_the_reference_does():
    rng = np.random.default_rng(4)
    rgb = np.repeat(np.repeat(rng.integers(0, 255, (50, 100, 3), dtype=np.uint8), 10, 0), 10, 1)  # 1000x500
    decoded = decode_snapshot(encode(rgb, "PNG"), SnapshotLimits(max_bytes=5_000_000))
    assert decoded.rgb.shape == (500, 1000, 3)
    assert decoded.pdq_rgb.shape == (256, 512, 3)
    # The reference Python hasher: Image.thumbnail((512, 512)) then PDQ.
    thumbnail = Image.fromarray(rgb)
    thumbnail.thumbnail((512, 512))
    expected, _quality = reference_hashes(np.asarray(thumbnail))
    assert pdq_hashes(decoded.pdq_rgb).hex == expected[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_841), st.integers(0, 255)), min_size=1, max_size=20),
       st.integers(0, 10_842))
def test_mangled_jpegs_raise_only_snapshot_errors(edits, cut):
    data = bytearray(fixture_bytes("scene.jpg"))
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[:max(cut, 1)])
    try:
        decoded = decode_snapshot(data)
    except SnapshotError as exc:
        assert exc.reason in REASONS
    else:
        pdq_hashes(decoded.pdq_rgb)  # whatever decoded also hashes


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_snapshot_errors(data):
    try:
        decode_snapshot(data)
    except SnapshotError as exc:
        assert exc.reason in REASONS
