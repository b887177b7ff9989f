"""What goes into the text detectors and what comes out of them.

Pure data: no broker, no gRPC, no database. The enums are the generated
protobuf ones (`parley.v1.common_pb2`), so a verdict speaks the contract's
categories, modes and age bands without any conversion.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from parley.v1 import common_pb2

# The detectors, by the name each has in metrics (`detector` label) and rules.
CONTACT = "contact"
AGE = "age"
GROOMING = "grooming"
SEXUAL = "sexual"
HARASSMENT = "harassment"
SPAM = "spam"
DETECTORS = (CONTACT, AGE, GROOMING, SEXUAL, HARASSMENT, SPAM)

# The category each detector reports under when a rule does not say otherwise.
DETECTOR_CATEGORY: dict[str, int] = {
    CONTACT: common_pb2.CATEGORY_CONTACT_SOLICITATION,
    AGE: common_pb2.CATEGORY_UNDERAGE,
    GROOMING: common_pb2.CATEGORY_CHILD_SAFETY,
    SEXUAL: common_pb2.CATEGORY_SEXUAL_CONTENT,
    HARASSMENT: common_pb2.CATEGORY_HARASSMENT,
    SPAM: common_pb2.CATEGORY_SPAM,
}

MINOR = common_pb2.AGE_BAND_MINOR
ADULT = common_pb2.AGE_BAND_ADULT


@dataclass(frozen=True, slots=True)
class ObservedMessage:
    """One chat line as moderation sees it: the fields of
    `parley.v1.MessageObserved`, plus two the gateway may add.

    `typing_started_at_ms`: when the sender's typing indicator turned on for
    this line (0: unknown). `connected_at_ms`: when the conversation was
    connected (0: unknown). Both only sharpen the typing-speed rule; without
    them it falls back on the time since the sender's previous line.
    """
    match_id: str
    session_id: str
    device_token: str
    mode: int
    age_band: int
    text: str
    sent_at_ms: int
    typing_started_at_ms: int = 0
    connected_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Signal:
    """One rule's finding in one message.

    `score` is in [0, 1]. `severe` marks a finding that, at or above the
    policy's severe threshold, ends the conversation at once, escalates at top
    priority and asks for a permanent ban. `span` is [start, end) in the text
    as sent, and `evidence` the text there. `cue` names the grooming cue the
    finding feeds (the grooming score is made over the whole conversation
    from these), and `age` the age a person disclosed.
    """
    detector: str
    rule: str
    category: int
    score: float
    severe: bool = False
    span: tuple[int, int] | None = None
    evidence: str = ""
    cue: str | None = None
    age: int | None = None


@dataclass(frozen=True, slots=True)
class ContactFinding:
    """A contact detail or a request to move elsewhere, found in a text."""
    rule: str                    # contact.phone, contact.email, contact.handle, contact.link, contact.app_request
    score: float
    span: tuple[int, int]        # in the original text
    maskable: bool               # a detail that must not reach the other side of a minors' conversation


@dataclass(slots=True)
class MessageContext:
    """What a detector may read about one message. `partner_age` is the age
    the other side of the conversation disclosed, if any: an adult talking
    sexually to someone who said they are 14 is a child-safety matter even
    in the adults' pool."""
    message: ObservedMessage
    views: "Views"  # noqa: F821 - services.moderation.detectors.normalize.Views
    offensive_probability: float = 0.0
    partner_age: int | None = None
    own_age: int | None = None
    previous_sent_at_ms: int = 0
    contacts: list[ContactFinding] = field(default_factory=list)
    # the other side's last line asked this one's age ("asl", "how old r u"):
    # a bare "13" in reply is a disclosure
    asked_age: bool = False
    # P(offensive) of another text, for a detector that needs a second look
    rescore: Callable[[str], float] | None = None

    @property
    def minors_pool(self) -> bool:
        return self.message.age_band == MINOR

    @property
    def toward_minor(self) -> bool:
        """The other side is a minor, by the pool or by what they said."""
        return self.minors_pool or (self.partner_age is not None and self.partner_age < 18)
