"""One call for the moderation service: a snapshot's bytes in, a verdict out.

    banks = HashBanks()
    banks.load_file("banks/ncmec.txt", bank="ncmec", category=common_pb2.CATEGORY_CHILD_SAFETY)
    analyzer = SnapshotAnalyzer(banks, NudityClassifier(threshold=0.5), SnapshotConfig())
    verdict = analyzer.analyze(event.jpeg, event.age_band, event.mode)
    if verdict.severe: end the session now, escalate at top priority, ask for a permanent ban
    elif verdict.flagged: warn / flag for review (verdict.category)

What decides (the issue's rules, in this order of precedence):

1. a bank match (any of the eight dihedral hashes within max_distance of a
   bank entry, on a frame of quality >= min_quality): CATEGORY_KNOWN_BAD_HASH,
   severe. Only load banks of content that warrants this.
2. nudity (score >= the threshold) in a minors' pool (AGE_BAND_MINOR, and an
   unspecified or unknown band, which we treat as minors' to be safe):
   CATEGORY_CHILD_SAFETY, severe.
3. nudity in the adults' pool: CATEGORY_SEXUAL_CONTENT, not severe (warn, flag).

`findings` lists every rule that fired; `category` and `severe` are the first.
A frame below min_quality (flat, black, nearly uniform) is not matched
against the banks: its hash is noise that could match anything; it is still
classified.

`analyze` is synchronous and CPU-bound (on a 320x240 frame: about 1 ms of
decoding and hashing, 3 to 6 ms of matching against a million bank hashes,
15 ms of classifier with one ONNX thread) and thread-safe: from
asyncio, run it in a thread pool (`await asyncio.to_thread(analyzer.analyze,
...)`). Bad input raises SnapshotError (InvalidSnapshot or SnapshotTooLarge,
with a short `reason`) and nothing else.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from parley.v1 import common_pb2
from services.moderation.snapshots.banks import DEFAULT_MAX_DISTANCE, MAX_MAX_DISTANCE, BankMatch, HashBanks
from services.moderation.snapshots.decode import SnapshotLimits, decode_snapshot
from services.moderation.snapshots.nudity import NudityScore, NudityScorer
from services.moderation.snapshots.pdq import DEFAULT_MIN_QUALITY, pdq_hashes

ADULT_BANDS = frozenset({common_pb2.AGE_BAND_ADULT})


@dataclass(frozen=True)
class SnapshotConfig:
    limits: SnapshotLimits = field(default_factory=SnapshotLimits)
    min_quality: int = DEFAULT_MIN_QUALITY      # PDQ quality below this: no bank match
    max_distance: int = DEFAULT_MAX_DISTANCE    # Hamming distance that counts as a bank match
    # Nudity threshold in minors' pools; None: the classifier's own threshold.
    minor_nudity_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_quality <= 100:
            raise ValueError(f"min_quality must be 0 to 100, not {self.min_quality}")
        if not 0 <= self.max_distance <= MAX_MAX_DISTANCE:
            raise ValueError(f"max_distance must be 0 to {MAX_MAX_DISTANCE}, not {self.max_distance}")
        if self.minor_nudity_threshold is not None and not 0.0 < self.minor_nudity_threshold <= 1.0:
            raise ValueError(f"minor_nudity_threshold must be in (0, 1], not {self.minor_nudity_threshold}")


@dataclass(frozen=True)
class Finding:
    category: int       # parley.v1.Category
    severe: bool
    reason: str         # for the log and the reviewer


@dataclass(frozen=True)
class SnapshotVerdict:
    pdq_hex: str                      # the frame's PDQ hash (reference hex), for evidence
    quality: int                      # PDQ quality, 0-100
    width: int
    height: int
    age_band: int
    mode: int
    bank_checked: bool                # False: quality too low (or no banks)
    matches: tuple[BankMatch, ...]    # closest first
    nudity: NudityScore | None        # None: no classifier configured
    nudity_threshold: float | None    # the threshold applied (depends on the pool)
    findings: tuple[Finding, ...]
    elapsed_ms: float

    @property
    def category(self) -> int:
        """The deciding finding's category; CATEGORY_UNSPECIFIED when clean."""
        return self.findings[0].category if self.findings else common_pb2.CATEGORY_UNSPECIFIED

    @property
    def severe(self) -> bool:
        """End the session at once, escalate at top priority, ask for a permanent ban."""
        return bool(self.findings) and self.findings[0].severe

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def end_session(self) -> bool:
        return self.severe

    @property
    def request_permanent_ban(self) -> bool:
        return self.severe


def is_minors_pool(age_band: int) -> bool:
    """Anything but a declared adult band counts as minors' (the safe side)."""
    return age_band not in ADULT_BANDS


class SnapshotAnalyzer:
    def __init__(self, banks: HashBanks | None = None, classifier: NudityScorer | None = None,
                 config: SnapshotConfig | None = None) -> None:
        self.banks = banks
        self.classifier = classifier
        self.config = config or SnapshotConfig()

    def analyze(self, data: bytes, age_band: int, mode: int = common_pb2.MODE_VIDEO) -> SnapshotVerdict:
        started = time.perf_counter()
        config = self.config
        decoded = decode_snapshot(data, config.limits)
        hashes = pdq_hashes(decoded.pdq_rgb)
        bank_checked = self.banks is not None and hashes.quality >= config.min_quality
        matches = tuple(self.banks.search(hashes, config.max_distance)) if bank_checked else ()

        minor = is_minors_pool(age_band)
        nudity: NudityScore | None = None
        threshold: float | None = None
        if self.classifier is not None:
            nudity = self.classifier.score(decoded.rgb)
            threshold = self.classifier.threshold
            if minor and config.minor_nudity_threshold is not None:
                threshold = config.minor_nudity_threshold

        findings: list[Finding] = []
        if matches:
            best = matches[0]
            findings.append(Finding(
                common_pb2.CATEGORY_KNOWN_BAD_HASH, True,
                f"matched bank {best.bank!r} entry {best.source_id or best.bank_hash} at distance "
                f"{best.distance} ({best.dihedral}); {len(matches)} match(es)"))
        if nudity is not None and threshold is not None and nudity.score >= threshold:
            parts = ", ".join(f"{label} {score:.2f}" for label, score in nudity.labels)
            if minor:
                findings.append(Finding(common_pb2.CATEGORY_CHILD_SAFETY, True,
                                        f"nudity in a minors' pool: {parts}"))
            else:
                findings.append(Finding(common_pb2.CATEGORY_SEXUAL_CONTENT, False, f"nudity: {parts}"))
        findings.sort(key=lambda f: not f.severe)  # stable: severe first, in the order above

        return SnapshotVerdict(
            pdq_hex=hashes.hex, quality=hashes.quality, width=decoded.width, height=decoded.height,
            age_band=age_band, mode=mode, bank_checked=bank_checked, matches=matches, nudity=nudity,
            nudity_threshold=threshold, findings=tuple(findings),
            elapsed_ms=(time.perf_counter() - started) * 1000)
