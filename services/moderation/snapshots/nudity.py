"""The nudity classifier: NudeNet's detector (the `nudenet` package, 3.4),
whose ONNX weights (`320n.onnx`, a YOLOv8-n detector at 320x320, 18 body-part
classes) ship inside its wheel. It runs on onnxruntime's CPU provider; nothing
is downloaded, ever: the model is read from the installed package, and a
missing file is an error at construction, not a fetch.

We run NudeNet's model the way its own `NudeDetector.detect` does (the same
preprocessing function, the same 0.2 detection floor, the same class-agnostic
non-maximum suppression), with two differences that do not change results:
the postprocessing is vectorized (the package loops over 2,100 candidate boxes
in Python, about 8 ms a frame) and the ONNX session's thread count is ours to
set. tests/unit/moderation/snapshots checks that the detections equal
`NudeDetector().detect()`'s.

Score: the highest detection score among the exposed-body-part classes
(EXPOSED_CLASSES; covered parts, faces, feet, armpits, belly and male chest
do not count), 0.0 when there is none. A score at or above `threshold` is
nudity.

Licence: NudeNet's code and model are AGPL-3.0 (the LICENSE file in its
wheel; the wheel's metadata says MIT).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from services.moderation.snapshots.decode import SnapshotLimits, decode_snapshot

EXPOSED_CLASSES: tuple[str, ...] = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
DEFAULT_THRESHOLD = 0.5
# NudeNet's own constants (nudenet/nudenet.py, 3.4.2).
_DETECTION_FLOOR = 0.2
_NMS_SCORE = 0.25
_NMS_IOU = 0.45
_INPUT_SIZE = 320


class ClassifierUnavailable(RuntimeError):
    """The classifier's package or its bundled model file is missing."""


class NudityScore(NamedTuple):
    score: float                              # 0..1
    labels: tuple[tuple[str, float], ...]     # exposed classes detected, best first


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]            # x, y, width, height in the image's pixels


class NudityScorer(Protocol):
    """What SnapshotAnalyzer needs of a classifier (tests give a stub)."""

    threshold: float

    def score(self, image: np.ndarray | bytes) -> NudityScore: ...


def packaged_model_path() -> str:
    """The ONNX file inside the installed nudenet package."""
    try:
        import nudenet
    except ImportError as exc:
        raise ClassifierUnavailable(f"the nudenet package is not installed: {exc}") from None
    path = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
    if not os.path.isfile(path):
        raise ClassifierUnavailable(f"nudenet's bundled model is missing: {path}")
    return path


class NudityClassifier:
    """NudeNet's detector as a nudity score. Thread-safe (onnxruntime
    sessions are); `score` takes about 15 ms of CPU for a 320x240 frame
    with one ONNX thread (`threads`: more threads help little on a busy
    machine; run several analyses in parallel instead)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, classes: tuple[str, ...] = EXPOSED_CLASSES,
                 threads: int = 1, model_path: str | None = None,
                 limits: SnapshotLimits = SnapshotLimits()) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        try:
            import cv2
            import onnxruntime
            from nudenet import nudenet as nudenet_module
        except ImportError as exc:
            raise ClassifierUnavailable(f"nudenet, onnxruntime or opencv is not installed: {exc}") from None
        self._cv2 = cv2
        self._read_image = nudenet_module._read_image  # the package's own preprocessing
        self.class_names: tuple[str, ...] = tuple(getattr(nudenet_module, "__labels"))
        unknown = set(classes) - set(self.class_names)
        if unknown:
            raise ValueError(f"unknown NudeNet classes: {sorted(unknown)}")
        self.threshold = float(threshold)
        self.classes = tuple(classes)
        self._wanted = np.array([name in self.classes for name in self.class_names])
        self._limits = limits
        self.model_path = model_path or packaged_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            self.model_path, sess_options=options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        outputs = self._session.get_outputs()[0].shape
        if len(outputs) != 3 or outputs[1] != 4 + len(self.class_names):
            raise ClassifierUnavailable(f"unexpected model output shape {outputs} for {len(self.class_names)} classes")

    def is_nude(self, score: float) -> bool:
        return score >= self.threshold

    def detect(self, image: np.ndarray | bytes) -> list[Detection]:
        """Every body-part detection, as NudeDetector.detect gives them.
        `image`: an RGB (height, width, 3) uint8 array, or encoded bytes
        (decoded under the snapshot limits)."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_snapshot(image, self._limits).rgb
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("an RGB (height, width, 3) uint8 array or encoded image bytes")
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # what cv2.imread gives NudeDetector
        blob, _x_ratio, _y_ratio, x_pad, y_pad, width, height = self._read_image(bgr, _INPUT_SIZE)
        output = self._session.run(None, {self._input_name: blob})[0]
        return self._postprocess(output, x_pad, y_pad, width, height)

    def score(self, image: np.ndarray | bytes) -> NudityScore:
        best: dict[str, float] = {}
        for detection in self.detect(image):
            if detection.label in self.classes and detection.score > best.get(detection.label, -1.0):
                best[detection.label] = detection.score
        labels = tuple(sorted(best.items(), key=lambda item: (-item[1], item[0])))
        return NudityScore(score=labels[0][1] if labels else 0.0, labels=labels)

    def _postprocess(self, output: np.ndarray, x_pad: int, y_pad: int, width: int, height: int) -> list[Detection]:
        """NudeNet's _postprocess, vectorized: same floor, same box
        arithmetic (float32), same NMS."""
        rows = np.transpose(np.squeeze(output[0]))                 # (boxes, 4 + classes)
        class_scores = rows[:, 4:]
        best = np.max(class_scores, axis=1)
        keep = best >= _DETECTION_FLOOR
        if not keep.any():
            return []
        rows = rows[keep]
        class_ids = np.argmax(class_scores[keep], axis=1)
        scores = best[keep]
        cx, cy, w, h = (rows[:, i] for i in range(4))  # float32, as there
        x = (cx - w / 2) * (width + x_pad) / _INPUT_SIZE
        y = (cy - h / 2) * (height + y_pad) / _INPUT_SIZE
        w = w * (width + x_pad) / _INPUT_SIZE
        h = h * (height + y_pad) / _INPUT_SIZE
        x = np.maximum(0, np.minimum(x, width))
        y = np.maximum(0, np.minimum(y, height))
        w = np.minimum(w, width - x)
        h = np.minimum(h, height - y)
        boxes = np.stack([x, y, w, h], axis=1).tolist()
        kept = self._cv2.dnn.NMSBoxes(boxes, scores.tolist(), _NMS_SCORE, _NMS_IOU)
        return [Detection(label=self.class_names[int(class_ids[i])], score=float(scores[i]),
                          box=tuple(int(v) for v in boxes[i]))  # type: ignore[arg-type]
                for i in np.asarray(kept, dtype=np.int64).ravel()]
