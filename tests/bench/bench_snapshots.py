"""Micro-benchmark of the video-snapshot half of moderation
(services/moderation/snapshots), in one process, no broker:

1. a hash bank of 1,000,000 random PDQ hashes plus planted near-matches
   (distances 0 to 31 through random dihedral slots, and 32 that must not
   match), indexed as the service indexes it;
2. bank matching: queries of 8 dihedral hashes each (a snapshot's), per
   second, through the multi-index, and the same through a brute-force
   numpy scan of the whole bank (the raw limit, measured in the same run);
3. decoding and PDQ-hashing a 320x240 JPEG (what the web client sends);
4. NudeNet's nudity score of that frame, and the whole `analyze` call.

    .venv/bin/python tests/bench/bench_snapshots.py
    .venv/bin/python tests/bench/bench_snapshots.py --bank-size 100000 --queries 500

Last line, JSON: snapshot_matches_per_s (queries of 8 hashes against the bank
per second, one thread), bank_size, bank_mib (the index's arrays),
bank_build_s, pdq_ms (decode + 8 dihedral hashes of one frame), decode_ms,
nudity_ms (classifier, one ONNX thread), nudity_ms_2_threads, analyze_ms
(the whole façade: decode, hash, match, classify), brute_force_matches_per_s
(the raw limit beside snapshot_matches_per_s), speedup, planted_found /
planted (recall on planted matches, must be equal), false_matches_at_32 (must
be 0), rss_mib (peak resident memory of the process). About 30-60 s.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from parley.v1 import common_pb2  # noqa: E402
from services.moderation.snapshots import (  # noqa: E402
    HashBanks, NudityClassifier, SnapshotAnalyzer, decode_snapshot, pdq_hashes)

MAX_DISTANCE = 31


def say(text: str) -> None:
    print(text, flush=True)


def flip(row: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    out = row.copy()
    for bit in rng.choice(256, size=count, replace=False):
        out[int(bit) // 8] ^= np.uint8(1 << (int(bit) % 8))
    return out


def frame(seed: int, width: int = 320, height: int = 240) -> bytes:
    """A 320x240 JPEG of smooth coloured waves (a stand-in for a camera frame)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.full((height, width, 3), 128.0)
    for channel in range(3):
        for _ in range(6):
            fx, fy = rng.uniform(0.5, 6, 2)
            image[:, :, channel] += rng.uniform(10, 40) * np.sin(
                2 * np.pi * (fx * x / width + fy * y / height) + rng.uniform(0, 2 * np.pi))
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=60)
    return out.getvalue()


def brute_force(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Bank rows within MAX_DISTANCE of any of the query's hashes, by a full scan."""
    hit = np.zeros(len(words), bool)
    for row in query.view(np.uint64):
        counts = np.bitwise_count(words ^ row)
        dist = counts[:, 0].astype(np.int16) + counts[:, 1] + counts[:, 2] + counts[:, 3]
        hit |= dist <= MAX_DISTANCE
    return np.nonzero(hit)[0]


def timed(fn, repeat: int) -> float:
    """Median milliseconds of fn() over `repeat` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def run(bank_size: int, queries: int, planted: int, brute_queries: int, snapshots: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)

    say(f"bank: {bank_size:,} random PDQ hashes")
    bank_rows = rng.integers(0, 256, (bank_size, 32), dtype=np.uint8)
    query_sets = rng.integers(0, 256, (queries, 8, 32), dtype=np.uint8)
    # Plant near-matches: query i's slot s is bank row r with d bits flipped.
    plants = []  # (query index, bank row, distance)
    for i in rng.choice(queries, size=min(planted, queries), replace=False):
        row, slot, distance = int(rng.integers(bank_size)), int(rng.integers(8)), int(rng.integers(0, 33))
        query_sets[i, slot] = flip(bank_rows[row], distance, rng)
        plants.append((int(i), row, distance))

    banks = HashBanks(max_distance=MAX_DISTANCE)
    started = time.perf_counter()
    banks.add_many(bank_rows, bank="bench", category=common_pb2.CATEGORY_KNOWN_BAD_HASH)
    build_s = time.perf_counter() - started
    bank_mib = banks.memory_bytes() / 2**20
    say(f"  indexed in {build_s:.2f} s, {bank_mib:.1f} MiB of arrays")

    say(f"matching: {queries:,} queries of 8 dihedral hashes each")
    results = []
    started = time.perf_counter()
    for query in query_sets:
        results.append(banks.search(query))
    match_s = time.perf_counter() - started
    matches_per_s = queries / match_s
    say(f"  {matches_per_s:,.0f} queries/s ({match_s / queries * 1000:.2f} ms each)")

    hex_of = {row: bank_rows[row].tobytes().hex() for _, row, _ in plants}
    found = sum(1 for i, row, d in plants if d <= MAX_DISTANCE
                and any(m.bank_hash == hex_of[row] and m.distance == d for m in results[i]))
    expected = sum(1 for _, _, d in plants if d <= MAX_DISTANCE)
    false_at_32 = sum(1 for i, row, d in plants if d > MAX_DISTANCE
                      and any(m.bank_hash == hex_of[row] for m in results[i]))
    say(f"  planted: {found}/{expected} found, {false_at_32} matched at distance 32")

    say(f"brute force: {brute_queries} queries scanning all {bank_size:,} hashes")
    words = bank_rows.view(np.uint64)
    checked = [i for i, _, _ in plants][:brute_queries] or list(range(brute_queries))
    started = time.perf_counter()
    for i in checked:
        rows = brute_force(words, query_sets[i])
        assert {bank_rows[r].tobytes().hex() for r in rows} == {m.bank_hash for m in results[i]}, \
            f"query {i}: index and brute force disagree"
    brute_per_s = len(checked) / (time.perf_counter() - started)
    say(f"  {brute_per_s:,.1f} queries/s, same matches as the index")

    say(f"snapshots: {snapshots} different 320x240 JPEG frames")
    frames = [frame(seed + k) for k in range(snapshots)]
    say(f"  {np.mean([len(f) for f in frames]) / 1024:.1f} KiB each on average")
    k = iter(range(10**9))
    decode_ms = timed(lambda: decode_snapshot(frames[next(k) % snapshots]), snapshots)
    pdq_ms = timed(lambda: pdq_hashes(decode_snapshot(frames[next(k) % snapshots]).pdq_rgb), snapshots)
    say(f"  decode {decode_ms:.2f} ms, decode + PDQ (8 dihedral hashes) {pdq_ms:.2f} ms")

    rgbs = [decode_snapshot(f).rgb for f in frames]
    classifier = NudityClassifier(threads=1)
    nudity_ms = timed(lambda: classifier.score(rgbs[next(k) % snapshots]), snapshots)
    classifier_2 = NudityClassifier(threads=2)
    nudity_ms_2 = timed(lambda: classifier_2.score(rgbs[next(k) % snapshots]), snapshots)
    say(f"  nudity {nudity_ms:.1f} ms (1 ONNX thread), {nudity_ms_2:.1f} ms (2 threads)")

    analyzer = SnapshotAnalyzer(banks, classifier)
    analyze_ms = timed(lambda: analyzer.analyze(frames[next(k) % snapshots], common_pb2.AGE_BAND_ADULT,
                                                common_pb2.MODE_VIDEO), snapshots)
    say(f"  analyze (decode, hash, match against {bank_size:,}, classify) {analyze_ms:.1f} ms")

    return {
        "snapshot_matches_per_s": round(matches_per_s, 1),
        "bank_size": bank_size,
        "bank_mib": round(bank_mib, 1),
        "bank_build_s": round(build_s, 2),
        "pdq_ms": round(pdq_ms, 3),
        "decode_ms": round(decode_ms, 3),
        "nudity_ms": round(nudity_ms, 2),
        "nudity_ms_2_threads": round(nudity_ms_2, 2),
        "analyze_ms": round(analyze_ms, 2),
        "brute_force_matches_per_s": round(brute_per_s, 2),
        "speedup": round(matches_per_s / brute_per_s, 1),
        "planted": expected,
        "planted_found": found,
        "false_matches_at_32": false_at_32,
        "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank-size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--planted", type=int, default=200, help="queries given a near-match (0-32 bits)")
    parser.add_argument("--brute-queries", type=int, default=5)
    parser.add_argument("--snapshots", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        summary = run(args.bank_size, args.queries, args.planted, args.brute_queries, args.snapshots, args.seed)
        ok = summary["planted_found"] == summary["planted"] and summary["false_matches_at_32"] == 0
        if not ok:
            summary["error"] = "planted matches missed or false matches found"
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, last line JSON either way
        summary = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(summary), flush=True)
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
