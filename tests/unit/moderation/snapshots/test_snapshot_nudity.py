"""The real NudeNet model, loaded from inside its installed package with the
network shut: our vectorized run gives exactly NudeDetector.detect's
detections, scores follow the exposed classes only, and the analyzer acts on
the real model's score.

No fixture shows real nudity: blobs.jpg is abstract (blurred skin-toned
ellipses) and the model scores it as FEMALE_BREAST_EXPOSED at about 0.8, a
false positive that lets these tests push the real model over its threshold.
"""
from __future__ import annotations

import socket
from pathlib import Path

import nudenet
import numpy as np
import pytest

from parley.v1 import common_pb2
from services.moderation.snapshots import (
    EXPOSED_CLASSES, NudityClassifier, NudityScore, SnapshotAnalyzer, SnapshotError, decode_snapshot)
from services.moderation.snapshots.nudity import packaged_model_path
from tests.unit.moderation.snapshots.snapshot_helpers import fixture_bytes, fixture_rgb



class NetworkUsed(AssertionError):
    pass


@pytest.fixture(scope="module")
def no_network():
    """Any attempt to resolve a name or open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network used: {args[:2]}")
    patch = pytest.MonkeyPatch()
    patch.setattr(socket, "getaddrinfo", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket.socket, "connect_ex", refuse)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def classifier(no_network):
    return NudityClassifier(threshold=0.5)


def test_the_model_is_the_file_inside_the_installed_package(classifier):
    path = Path(packaged_model_path())
    assert path.parent == Path(nudenet.__file__).parent
    assert path.name == "320n.onnx" and path.stat().st_size > 10_000_000
    assert classifier.model_path == str(path)


def test_an_ordinary_frame_scores_zero(classifier):
    assert classifier.score(fixture_rgb("scene.jpg")) == NudityScore(0.0, ())
    assert classifier.score(fixture_rgb("black.jpg")) == NudityScore(0.0, ())


def test_the_abstract_blobs_score_high_and_bytes_work_too(classifier):
    score, labels = classifier.score(fixture_bytes("blobs.jpg"))
    assert score >= 0.7
    assert labels[0] == ("FEMALE_BREAST_EXPOSED", score)
    assert all(label in EXPOSED_CLASSES for label, _ in labels)
    assert classifier.is_nude(score)


def _skin_blobs(seed: int) -> np.ndarray:
    from tests.fixtures.snapshots.make_fixtures import blobs
    return np.asarray(blobs(seed))


@pytest.mark.parametrize("name", ["scene.jpg", "blobs.jpg", "black.jpg"])
def test_detections_equal_nudedetector_detect(classifier, name):
    rgb = fixture_rgb(name)
    expected = nudenet.NudeDetector().detect(np.ascontiguousarray(rgb[:, :, ::-1]))  # it takes BGR, as cv2 reads
    got = classifier.detect(rgb)
    assert [(d.label, d.box) for d in got] == [(e["class"], tuple(e["box"])) for e in expected]
    assert [d.score for d in got] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_detections_equal_nudedetector_detect_on_many_generated_frames(classifier):
    reference = nudenet.NudeDetector()
    seen = 0
    for seed in range(30):
        rgb = _skin_blobs(seed)
        expected = reference.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        got = classifier.detect(rgb)
        assert [(d.label, d.box) for d in got] == [(e["class"], tuple(e["box"])) for e in expected]
        seen += len(got)
    assert seen >= 2  # the comparison was not vacuous


def test_only_the_chosen_classes_count(no_network):
    faces_only = NudityClassifier(classes=("FACE_FEMALE",))
    assert faces_only.score(fixture_rgb("blobs.jpg")).score < 0.5
    with pytest.raises(ValueError):
        NudityClassifier(classes=("NOT_A_CLASS",))
    with pytest.raises(ValueError):
        NudityClassifier(threshold=0)


def test_bad_input(classifier):
    with pytest.raises(SnapshotError):
        classifier.score(b"not an image")
    with pytest.raises(ValueError):
        classifier.score(np.zeros((10, 10), np.uint8))


def test_the_analyzer_with_the_real_model(classifier):
    analyzer = SnapshotAnalyzer(None, classifier)
    minor = analyzer.analyze(fixture_bytes("blobs.jpg"), common_pb2.AGE_BAND_MINOR, common_pb2.MODE_VIDEO)
    assert minor.category == common_pb2.CATEGORY_CHILD_SAFETY and minor.severe
    adult = analyzer.analyze(fixture_bytes("blobs.jpg"), common_pb2.AGE_BAND_ADULT, common_pb2.MODE_VIDEO)
    assert adult.category == common_pb2.CATEGORY_SEXUAL_CONTENT and not adult.severe
    clean = analyzer.analyze(fixture_bytes("scene.jpg"), common_pb2.AGE_BAND_MINOR, common_pb2.MODE_VIDEO)
    assert not clean.flagged and clean.nudity == NudityScore(0.0, ())
    assert decode_snapshot(fixture_bytes("blobs.jpg")).width == 320
