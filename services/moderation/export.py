"""The law-enforcement package of an escalated child-safety case, without
I/O: the fields a CyberTipline report carries (NCMEC's reporting form for US
providers under 18 U.S.C. 2258A), from what the vault holds.

The package is one JSON document plus the evidence blobs it names by
SHA-256 (`files`). It says plainly what Parley does not have: raw IP
addresses (only keyed hashes of the address and of its /24 or /48 prefix),
accounts, names or emails. What we have of "IP capture events" are the
times the gateway saw the reported user's identifiers: when they were
reported, when they sent the lines in the evidence, when they were seen on a
banned address.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from parley.v1 import common_pb2, moderation_pb2
from services.moderation.enums import enum_name
from services.moderation.store import FILING_MEDIA_TYPE, ExportMaterial, ReviewItem

FORMAT = "parley.law_enforcement_export.v1"

# The CyberTipline incident type a category most likely is; the analyst who
# files the report confirms it.
INCIDENT_TYPES = {
    common_pb2.CATEGORY_KNOWN_BAD_HASH: "Child Pornography (possession, manufacture, and distribution)",
    common_pb2.CATEGORY_CHILD_SAFETY: "Online Enticement of Children for Sexual Acts",
    common_pb2.CATEGORY_SEXUAL_CONTENT: "Unsolicited Obscene Material Sent to a Child",
    common_pb2.CATEGORY_UNDERAGE: "Online Enticement of Children for Sexual Acts",
}
DEFAULT_INCIDENT_TYPE = "Online Enticement of Children for Sexual Acts"

IP_NOTE = ("Parley never stores raw IP addresses. ip_hash is HMAC-SHA256 of the user's IP address under "
           "a secret key held by the provider; ip_prefix_hash the same of its /24 (IPv4) or /48 (IPv6) "
           "prefix. The provider can confirm whether a given address produced a given hash on request, "
           "by recomputing it with the key.")
ACCOUNT_NOTE = ("Parley has no accounts: users are anonymous. The device token is a random identifier the "
                "service issued to the user's browser or app and signed; it follows that device until its "
                "storage is cleared.")


def utc(unix_ms: int | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, or None."""
    if not unix_ms:
        return None
    seconds, millis = divmod(int(unix_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _identity(identity) -> dict:
    return {"device_token": identity.device_token, "ip_hash": identity.ip_hash,
            "ip_prefix_hash": identity.ip_prefix_hash}


@dataclass(frozen=True)
class _Filing:
    report_id: str
    source: str
    category: str
    comment: str
    reporter: dict
    reported: dict
    reported_at_ms: int
    evidence: tuple[tuple[bool, str, int], ...]  # (from_reporter, text, sent_at_ms)
    from_vault: bool


def _filings(material: ExportMaterial) -> list[_Filing]:
    """Each filing of the case as the vault keeps it (the content-addressed
    copy whose hash the custody log vouches for), or, for a filing older
    than the vault, as the review tables hold it."""
    kept = {}
    for link, media_type, content in material.blobs:
        if link.kind == "filing" and media_type == FILING_MEDIA_TYPE:
            record = json.loads(content)
            kept[record["report_id"]] = _Filing(
                report_id=record["report_id"], source=record["source"], category=record["category"],
                comment=record["comment"], reporter=record["reporter"], reported=record["reported"],
                reported_at_ms=record["reported_at_ms"],
                evidence=tuple((line["from_reporter"], line["text"], line["sent_at_ms"])
                               for line in record["evidence"]),
                from_vault=True)
    out = []
    for filing in material.item.filings:
        out.append(kept.get(filing.report_id) or _Filing(
            report_id=filing.report_id, source=filing.source,
            category=enum_name(common_pb2.Category, filing.category), comment=filing.comment,
            reporter=_identity(filing.reporter), reported=_identity(material.item.reported),
            reported_at_ms=filing.reported_at_ms,
            evidence=tuple((line.from_reporter, line.text, line.sent_at_ms) for line in filing.evidence),
            from_vault=False))
    return out


def build_package(material: ExportMaterial, *, exporter: str, role: str, reason: str,
                  generated_at_ms: int) -> dict:
    item: ReviewItem = material.item
    decision = item.decision
    filings = _filings(material)
    category = decision.category if decision else item.category
    first_seen = min((f.reported_at_ms for f in filings), default=item.created_at_ms)
    subject = _identity(item.reported)

    # Every time the gateway (or the ban service) saw the reported user's
    # identifiers, with what it saw.
    seen = []
    for filing in filings:
        seen.append({"at_utc": utc(filing.reported_at_ms), "event": _seen_event(filing.source),
                     "filing": filing.report_id, **filing.reported})
        for from_reporter, _text, sent_at_ms in filing.evidence:
            if not from_reporter:
                seen.append({"at_utc": utc(sent_at_ms), "event": "message sent",
                             "filing": filing.report_id, **filing.reported})
    seen.sort(key=lambda event: (event["at_utc"] or "", event["event"]))
    unique_seen = list({(e["at_utc"], e["event"]): e for e in seen}.values())

    # One transcript of every filing's lines, in time order, each line once.
    lines = sorted(dict.fromkeys(line for filing in filings for line in filing.evidence),
                   key=lambda line: line[2])
    messages = [{"sent_at_utc": utc(sent_at_ms), "side": "reporter" if from_reporter else "reported user",
                 "text": text} for from_reporter, text, sent_at_ms in lines]
    files = [{"sha256": link.sha256, "bytes": len(content), "media_type": media_type, "kind": link.kind,
              "filing": link.ref, "path": f"blobs/{link.sha256}"}
             for link, media_type, content in material.blobs]
    reporters = [{"filing": f.report_id, "source": f.source, "reported_at_utc": utc(f.reported_at_ms),
                  "category": f.category, "comment": f.comment,
                  "record": "evidence vault" if f.from_vault else "review database (filed before the vault)",
                  **({"reporter": f.reporter} if f.reporter.get("device_token") else {})}
                 for f in filings]
    return {
        "format": FORMAT,
        "generated_at_utc": utc(generated_at_ms),
        "generated_by": {"name": exporter, "role": role},
        "reason": reason,
        "case_id": item.item_id,
        "incident": {
            "type": INCIDENT_TYPES.get(category, DEFAULT_INCIDENT_TYPE),
            "type_note": "suggested from the moderation category; confirm before filing",
            "category": enum_name(common_pb2.Category, category),
            "first_seen_utc": utc(first_seen),
            "escalated_at_utc": utc(item.escalated_at_ms),
            "conversation_id": item.match_id or None,
            "mode": enum_name(common_pb2.Mode, item.mode),
            "declared_age_band_of_pool": enum_name(common_pb2.AgeBand, item.age_band),
        },
        "reported_user": {**subject, "ip_note": IP_NOTE, "account_note": ACCOUNT_NOTE},
        "ip_capture_events": unique_seen,
        "messages": messages,
        "files": files,
        "snapshot_hashes": [{"hash": value, "algorithm": value.split(":", 1)[0] if ":" in value else "unknown"}
                            for value in item.snapshot_hashes],
        "reporters": reporters,
        "escalation": {
            "decision_id": decision.decision_id if decision else None,
            "moderator": decision.moderator if decision else None,
            "note": decision.note if decision else None,
            "action": enum_name(moderation_pb2.Action, decision.action) if decision else None,
            "decided_at_utc": utc(decision.decided_at_ms) if decision else None,
        },
        "retention": {"retain_until_utc": utc(item.retain_until_ms), "legal_hold": item.legal_hold},
        "custody": {
            "note": "this case's entries in the provider's hash-chained custody log; "
                    "entry_hash = sha256(prev_hash || canonical entry)",
            "entries": [{"seq": e.entry.seq, "at_utc": utc(e.entry.at_ms), "actor": e.entry.actor,
                         "action": e.entry.action, "sha256": e.entry.sha256, "entry_hash": e.entry_hash}
                        for e in material.custody],
        },
    }


def _seen_event(source: str) -> str:
    if source == "user":
        return "reported by another user"
    if source == "ban":
        return "seen on a banned address"
    return "flagged by an automated detector"


def package_bytes(package: dict) -> bytes:
    """The package as sent, written and hashed (the custody log records this
    hash): sorted keys, indented for people to read, UTF-8."""
    return (json.dumps(package, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
