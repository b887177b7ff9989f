"""Text moderation as pure logic: detectors, conversation risk, and the
policy's actions, with no broker, gRPC or database in sight.

    from services.moderation.detectors import TextModerator, ObservedMessage, mask_contacts

    moderator = TextModerator(load_policy(path))      # or TextModerator() for the defaults
    verdicts = moderator.observe_batch(messages)      # list[Verdict], one per message
    masked, found = mask_contacts(text)               # the gateway's inline call in minors' pools

Detectors (each a module with one job, named for its metric label):
`contact`, `age`, `grooming`, `sexual`, `harassment`, `spam`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.moderation.detectors.base import (AGE, CONTACT, DETECTORS, GROOMING, HARASSMENT, SEXUAL, SPAM,
                                                ObservedMessage, Signal)
from services.moderation.detectors.contact import find_contacts, mask_contacts

if TYPE_CHECKING:
    from services.moderation.detectors.moderator import TextModerator, Verdict
    from services.moderation.detectors.model import OffensiveLanguageModel

__all__ = ["AGE", "CONTACT", "DETECTORS", "GROOMING", "HARASSMENT", "SEXUAL", "SPAM", "ObservedMessage", "Signal",
           "TextModerator", "Verdict", "OffensiveLanguageModel", "find_contacts", "mask_contacts"]


def __getattr__(name: str):
    # imported on first use: the moderator needs the policy module, which
    # needs this package's base types (and the model needs scikit-learn)
    if name in ("TextModerator", "Verdict"):
        from services.moderation.detectors import moderator
        return getattr(moderator, name)
    if name == "OffensiveLanguageModel":
        from services.moderation.detectors.model import OffensiveLanguageModel
        return OffensiveLanguageModel
    raise AttributeError(name)
