"""The façade's decisions, with a stub classifier (the real model is tested in
test_snapshot_nudity.py): a bank match is CATEGORY_KNOWN_BAD_HASH and severe,
nudity in a minors' pool CATEGORY_CHILD_SAFETY and severe, nudity among adults
CATEGORY_SEXUAL_CONTENT and not severe; low-quality frames never match banks;
a rotated or mirrored frame matches through its dihedral hashes."""
from __future__ import annotations

import numpy as np
import pytest

from parley.v1 import common_pb2
from services.moderation.snapshots import (
    HashBanks, NudityScore, SnapshotAnalyzer, SnapshotConfig, SnapshotError, SnapshotLimits,
    SnapshotTooLarge, decode_snapshot, pdq_hashes)
from tests.unit.moderation.snapshots.snapshot_helpers import encode, fixture_bytes, fixture_rgb, flip_bits

MINOR, ADULT, UNSPECIFIED = common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT, common_pb2.AGE_BAND_UNSPECIFIED
VIDEO = common_pb2.MODE_VIDEO


class StubClassifier:
    def __init__(self, score: float, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._score = score
        self.calls = 0

    def score(self, image):
        self.calls += 1
        assert image.ndim == 3 and image.shape[2] == 3
        labels = (("FEMALE_BREAST_EXPOSED", self._score),) if self._score else ()
        return NudityScore(self._score, labels)


def _scene_hash() -> str:
    return pdq_hashes(decode_snapshot(fixture_bytes("scene.jpg")).pdq_rgb).hex


def _banks_with(*hexes: str) -> HashBanks:
    banks = HashBanks()
    for i, value in enumerate(hexes):
        banks.add(value, bank="known-bad", category=common_pb2.CATEGORY_CHILD_SAFETY, source_id=f"item-{i}")
    return banks


def test_a_clean_frame_is_not_flagged():
    verdict = SnapshotAnalyzer(_banks_with("0f" * 32), StubClassifier(0.1)).analyze(fixture_bytes("scene.jpg"), ADULT, VIDEO)
    assert not verdict.flagged and not verdict.severe and not verdict.end_session
    assert verdict.category == common_pb2.CATEGORY_UNSPECIFIED
    assert verdict.matches == () and verdict.bank_checked
    assert verdict.quality == 100 and verdict.pdq_hex == _scene_hash()
    assert (verdict.width, verdict.height, verdict.age_band, verdict.mode) == (320, 240, ADULT, VIDEO)
    assert verdict.nudity == NudityScore(0.1, (("FEMALE_BREAST_EXPOSED", 0.1),))
    assert verdict.elapsed_ms > 0


@pytest.mark.parametrize("band", [ADULT, MINOR])
def test_a_known_bad_hash_is_severe_in_any_pool(band):
    verdict = SnapshotAnalyzer(_banks_with(_scene_hash())).analyze(fixture_bytes("scene.jpg"), band, VIDEO)
    assert verdict.category == common_pb2.CATEGORY_KNOWN_BAD_HASH
    assert verdict.severe and verdict.end_session and verdict.request_permanent_ban
    match, = verdict.matches
    assert (match.bank, match.source_id, match.distance, match.dihedral) == ("known-bad", "item-0", 0, "original")
    assert match.category == common_pb2.CATEGORY_CHILD_SAFETY  # the bank's own label, for the reviewer
    assert "known-bad" in verdict.findings[0].reason
    assert verdict.nudity is None and verdict.nudity_threshold is None  # no classifier given


@pytest.mark.parametrize("transform", [
    lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 3), lambda a: a[:, ::-1], lambda a: a[::-1],
    lambda a: a.transpose(1, 0, 2)])
def test_a_rotated_or_mirrored_frame_matches_through_a_dihedral_hash(transform):
    """The bank holds the upright picture; the client sends it turned or
    mirrored (and re-encoded as JPEG)."""
    frame = encode(np.ascontiguousarray(transform(fixture_rgb("scene.jpg"))), quality=70)
    verdict = SnapshotAnalyzer(_banks_with(_scene_hash())).analyze(frame, ADULT, VIDEO)
    assert verdict.category == common_pb2.CATEGORY_KNOWN_BAD_HASH and verdict.severe
    match, = verdict.matches
    assert match.dihedral != "original" and match.distance <= 31


def test_a_near_match_counts_and_a_far_one_does_not():
    scene = bytes.fromhex(_scene_hash())
    near, far = flip_bits(scene, 31).hex(), flip_bits(scene, 32).hex()
    assert SnapshotAnalyzer(_banks_with(near)).analyze(fixture_bytes("scene.jpg"), ADULT).matches[0].distance == 31
    assert not SnapshotAnalyzer(_banks_with(far)).analyze(fixture_bytes("scene.jpg"), ADULT).flagged
    tight = SnapshotAnalyzer(_banks_with(near), config=SnapshotConfig(max_distance=30))
    assert not tight.analyze(fixture_bytes("scene.jpg"), ADULT).flagged


@pytest.mark.parametrize("name", ["black.jpg", "flat_gray.png"])
def test_a_flat_frame_never_matches_a_bank_unless_the_quality_gate_is_lowered(name):
    frame = fixture_bytes(name)
    flat_hash = pdq_hashes(decode_snapshot(frame).pdq_rgb).hex
    banks = _banks_with(flat_hash)
    verdict = SnapshotAnalyzer(banks).analyze(frame, MINOR, VIDEO)
    assert verdict.quality == 0 and not verdict.bank_checked
    assert verdict.matches == () and not verdict.flagged
    lowered = SnapshotAnalyzer(banks, config=SnapshotConfig(min_quality=0)).analyze(frame, MINOR, VIDEO)
    assert lowered.bank_checked and lowered.matches and lowered.severe


def test_nudity_in_a_minors_pool_is_child_safety_and_severe():
    verdict = SnapshotAnalyzer(None, StubClassifier(0.7)).analyze(fixture_bytes("scene.jpg"), MINOR, VIDEO)
    assert verdict.category == common_pb2.CATEGORY_CHILD_SAFETY
    assert verdict.severe and verdict.end_session and verdict.request_permanent_ban
    assert not verdict.bank_checked
    assert "minors' pool" in verdict.findings[0].reason and "FEMALE_BREAST_EXPOSED 0.70" in verdict.findings[0].reason


@pytest.mark.parametrize("band", [UNSPECIFIED, 99])
def test_an_unspecified_or_unknown_band_is_treated_as_minors(band):
    verdict = SnapshotAnalyzer(None, StubClassifier(0.7)).analyze(fixture_bytes("scene.jpg"), band, VIDEO)
    assert verdict.category == common_pb2.CATEGORY_CHILD_SAFETY and verdict.severe


def test_nudity_among_adults_is_sexual_content_and_not_severe():
    verdict = SnapshotAnalyzer(None, StubClassifier(0.7)).analyze(fixture_bytes("scene.jpg"), ADULT, VIDEO)
    assert verdict.category == common_pb2.CATEGORY_SEXUAL_CONTENT
    assert verdict.flagged and not verdict.severe and not verdict.end_session and not verdict.request_permanent_ban


def test_the_threshold_is_inclusive_and_the_minors_one_can_be_stricter():
    at = SnapshotAnalyzer(None, StubClassifier(0.5, threshold=0.5)).analyze(fixture_bytes("scene.jpg"), ADULT)
    assert at.category == common_pb2.CATEGORY_SEXUAL_CONTENT
    below = SnapshotAnalyzer(None, StubClassifier(0.49, threshold=0.5)).analyze(fixture_bytes("scene.jpg"), ADULT)
    assert not below.flagged
    stricter = SnapshotConfig(minor_nudity_threshold=0.3)
    minor = SnapshotAnalyzer(None, StubClassifier(0.35), stricter).analyze(fixture_bytes("scene.jpg"), MINOR)
    assert minor.category == common_pb2.CATEGORY_CHILD_SAFETY and minor.nudity_threshold == 0.3
    adult = SnapshotAnalyzer(None, StubClassifier(0.35), stricter).analyze(fixture_bytes("scene.jpg"), ADULT)
    assert not adult.flagged and adult.nudity_threshold == 0.5


def test_both_a_bank_match_and_nudity_list_both_with_the_bank_first():
    analyzer = SnapshotAnalyzer(_banks_with(_scene_hash()), StubClassifier(0.9))
    minor = analyzer.analyze(fixture_bytes("scene.jpg"), MINOR)
    assert [f.category for f in minor.findings] == [common_pb2.CATEGORY_KNOWN_BAD_HASH, common_pb2.CATEGORY_CHILD_SAFETY]
    adult = analyzer.analyze(fixture_bytes("scene.jpg"), ADULT)
    assert [(f.category, f.severe) for f in adult.findings] == [
        (common_pb2.CATEGORY_KNOWN_BAD_HASH, True), (common_pb2.CATEGORY_SEXUAL_CONTENT, False)]
    assert adult.category == common_pb2.CATEGORY_KNOWN_BAD_HASH and adult.severe


@pytest.mark.parametrize("name", ["not_an_image.jpg", "truncated.jpg"])
def test_bad_input_raises_a_snapshot_error_and_the_classifier_is_not_called(name):
    classifier = StubClassifier(0.9)
    with pytest.raises(SnapshotError):
        SnapshotAnalyzer(_banks_with("00" * 32), classifier).analyze(fixture_bytes(name), MINOR)
    assert classifier.calls == 0


def test_the_analyzer_applies_its_limits():
    analyzer = SnapshotAnalyzer(config=SnapshotConfig(limits=SnapshotLimits(max_bytes=4096)))
    with pytest.raises(SnapshotTooLarge):
        analyzer.analyze(fixture_bytes("scene.jpg"), ADULT)


def test_config_is_checked():
    for bad in [dict(min_quality=101), dict(max_distance=-1), dict(max_distance=64), dict(minor_nudity_threshold=0.0)]:
        with pytest.raises(ValueError):
            SnapshotConfig(**bad)
