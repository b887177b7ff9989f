"""The offensive-language model: alt-profanity-check's linear model, which
ships inside its wheel (profanity_check/data/*.joblib, about 1 MB) and runs
offline. Nothing is downloaded, at install or at run time.

The package's model is a TF-IDF vectorizer (words, lowercase, English stop
words dropped, l2 norm) in front of scikit-learn's CalibratedClassifierCV of
five LinearSVCs with sigmoid calibration. Its own `predict_prob` costs
about 4 ms a call whatever the batch (scikit-learn's input checks), which
would cap one process near 250 single messages a second. The model is linear,
so `OffensiveLanguageModel` reads the fitted numbers out of it once at load
(vocabulary, idf, each fold's weights and sigmoid) and evaluates exactly the
same function itself: per message, a few dictionary look-ups. A unit test
checks it against the package's own `predict_prob`.

`predict_batch` takes many texts at once (the service consumes in batches);
the per-text cost is the same either way, so a batch is simply a loop with
the word-to-weight table shared.
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Sequence

# scikit-learn's default token pattern for the vectorizer the model was fitted with
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class _Fold:
    intercept: float
    a: float  # sigmoid calibration: p = 1 / (1 + exp(a * d + b))
    b: float


class OffensiveLanguageModel:
    """P(offensive) for short texts; thread-safe once built."""

    def __init__(self, weights: dict[str, tuple[float, ...]], folds: Sequence[_Fold], version: str) -> None:
        # word -> (idf, w_fold1 * idf ... w_foldN * idf)
        self._weights = weights
        self._folds = tuple(folds)
        self.version = version

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls) -> "OffensiveLanguageModel":
        """The model shipped in the `alt-profanity-check` package. Loads the
        package's files with joblib (trusted: part of an installed, pinned
        dependency); about 1.5 s, mostly importing scikit-learn."""
        from importlib import metadata, resources

        import joblib

        data = resources.files("profanity_check") / "data"
        with resources.as_file(data / "vectorizer.joblib") as path:
            vectorizer = joblib.load(path)
        with resources.as_file(data / "model.joblib") as path:
            model = joblib.load(path)
        return cls.from_sklearn(vectorizer, model, version=metadata.version("alt-profanity-check"))

    @classmethod
    def from_sklearn(cls, vectorizer, model, version: str = "") -> "OffensiveLanguageModel":
        params = vectorizer.get_params()
        expected = {"analyzer": "word", "lowercase": True, "ngram_range": (1, 1), "norm": "l2",
                    "use_idf": True, "sublinear_tf": False, "binary": False, "token_pattern": _TOKEN.pattern}
        differs = {k: params.get(k) for k, v in expected.items() if params.get(k) != v}
        if differs or params.get("tokenizer") or params.get("preprocessor"):
            raise ValueError(f"unexpected vectorizer settings {differs}: the fast path would not match it")
        if list(model.classes_) != [0, 1]:
            raise ValueError(f"unexpected classes {model.classes_}")
        folds = []
        coefs = []
        for calibrated in model.calibrated_classifiers_:
            estimator = calibrated.estimator
            (calibrator,) = calibrated.calibrators
            if calibrated.method != "sigmoid":
                raise ValueError(f"unexpected calibration {calibrated.method}")
            coefs.append(estimator.coef_.ravel())
            folds.append(_Fold(float(estimator.intercept_[0]), float(calibrator.a_), float(calibrator.b_)))
        idf = vectorizer.idf_
        weights = {}
        for word, index in vectorizer.vocabulary_.items():
            i = float(idf[index])
            weights[word] = (i, *(float(c[index]) * i for c in coefs))
        return cls(weights, folds, version)

    # ------------------------------------------------------------ scoring

    def predict(self, text: str) -> float:
        """P(offensive) of one text, as the package's `predict_prob` gives it."""
        counts: dict[str, int] = {}
        weights = self._weights
        for token in _TOKEN.findall(text.lower()):
            if token in weights:
                counts[token] = counts.get(token, 0) + 1
        folds = self._folds
        n = len(folds)
        if not counts:
            decisions = [f.intercept for f in folds]
        else:
            norm_sq = 0.0
            sums = [0.0] * n
            for token, count in counts.items():
                entry = weights[token]
                norm_sq += (count * entry[0]) ** 2
                for k in range(n):
                    sums[k] += count * entry[k + 1]
            inv = 1.0 / math.sqrt(norm_sq)
            decisions = [sums[k] * inv + folds[k].intercept for k in range(n)]
        total = 0.0
        for fold, d in zip(folds, decisions):
            z = fold.a * d + fold.b
            # numerically safe logistic of -z
            total += 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0
        return total / n

    def predict_batch(self, texts: Sequence[str]) -> list[float]:
        """P(offensive) of each text: the model run once over a batch."""
        predict = self.predict
        return [predict(t) for t in texts]


_shared: OffensiveLanguageModel | None = None
_shared_lock = threading.Lock()


def shared_model() -> OffensiveLanguageModel:
    """One model per process, loaded on first use."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = OffensiveLanguageModel.load()
    return _shared
