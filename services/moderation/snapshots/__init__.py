"""Video snapshot moderation as a library: PDQ hashes matched against hash
banks, and a nudity classifier, behind one façade (SnapshotAnalyzer).

No I/O but reading bank files, no broker, no service state: the moderation
service's consumer calls `SnapshotAnalyzer.analyze` and acts on the verdict.
Importing this package loads neither the PDQ extension nor the classifier's
model; `NudityClassifier()` loads the model (about 0.2 s, 12 MB).
"""
from services.moderation.snapshots.analyzer import (
    Finding, SnapshotAnalyzer, SnapshotConfig, SnapshotVerdict, is_minors_pool)
from services.moderation.snapshots.banks import (
    BankFileError, BankMatch, HashBanks, HashLabel, parse_bank_lines)
from services.moderation.snapshots.decode import (
    DecodedSnapshot, InvalidSnapshot, SnapshotError, SnapshotLimits, SnapshotTooLarge, decode_snapshot)
from services.moderation.snapshots.nudity import (
    EXPOSED_CLASSES, ClassifierUnavailable, NudityClassifier, NudityScore, NudityScorer)
from services.moderation.snapshots.pdq import DIHEDRALS, InvalidHash, PdqHashes, hamming, parse_hex, pdq_hashes

__all__ = [
    "BankFileError", "BankMatch", "ClassifierUnavailable", "DIHEDRALS", "DecodedSnapshot", "EXPOSED_CLASSES",
    "Finding", "HashBanks", "HashLabel", "InvalidHash", "InvalidSnapshot", "NudityClassifier", "NudityScore",
    "NudityScorer", "PdqHashes", "SnapshotAnalyzer", "SnapshotConfig", "SnapshotError", "SnapshotLimits",
    "SnapshotTooLarge", "SnapshotVerdict", "decode_snapshot", "hamming", "is_minors_pool", "parse_bank_lines",
    "parse_hex", "pdq_hashes",
]
