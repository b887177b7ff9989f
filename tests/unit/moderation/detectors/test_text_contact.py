"""Contact details and requests to move elsewhere; mask_contacts."""
import time

import pytest

from services.moderation.detectors import find_contacts, mask_contacts
from services.moderation.detectors.normalize import Views


def rules(text: str) -> set[str]:
    return {f.rule for f in find_contacts(Views(text))}


@pytest.mark.parametrize("text, hidden", [
    ("text me 555 867 5309", "555 867 5309"),
    ("my number is (312) 555-0147 call me later", "(312) 555-0147"),
    ("whatsapp me +44 7700 900123", "+44 7700 900123"),
    ("my # is five five five two one two eight eight nine one", "five five five two one two eight eight nine one"),
    ("call me 5️⃣5️⃣5️⃣ 4️⃣0️⃣1️⃣ 9️⃣9️⃣2️⃣3️⃣", "5️⃣5️⃣5️⃣ 4️⃣0️⃣1️⃣ 9️⃣9️⃣2️⃣3️⃣"),
    ("emily.parker2010@gmail.com message me", "emily.parker2010@gmail.com"),
    ("alex dot r dot 2008 at gmail dot com", "alex dot r dot 2008 at gmail dot com"),
    ("sam(at)hotmail(dot)com", "sam(at)hotmail(dot)com"),
    ("my snap is lily.rose09 add me", "lily.rose09"),
    ("add me on sc: kaylaa_xo", "kaylaa_xo"),
    ("s n a p : jaden_k2009", "jaden_k2009"),
    ("sn4pch4t is tylerr.b", "tylerr.b"),
    ("ѕnар: brooke.h10", "brooke.h10"),
    ("hmu on discord mikey#4821", "mikey#4821"),
    ("add my ig @sunny.daze_07", "@sunny.daze_07"),
    ("join discord.gg/xK92pLm", "discord.gg/xK92pLm"),
    ("my roblox is xX_Destroyer_Xx add me", "xX_Destroyer_Xx"),
    ("snap me lexi.xox", "lexi.xox"),
])
def test_contact_details_are_masked(text, hidden):
    masked, found = mask_contacts(text)
    assert found
    assert hidden not in masked
    assert "[hidden]" in masked


@pytest.mark.parametrize("text", [
    "i love snap peas with ranch", "oh snap thats crazy", "do you play call of duty", "snap back to reality",
    "my score in this game is 2450000 lol", "the year 2008 was when i was born", "we won 3 to 1 yesterday",
    "the meeting is at 10:30 tomorrow", "order number 88213 still hasnt shipped", "insta is full of fake people",
    "my discord got hacked once", "I said at home dot dot dot", "look at that dot on the screen",
    "i have 3400000 steps this year", "192.168.0.1 is my router", "it costs 1999 dollars",
])
def test_hard_negatives_are_left_alone(text):
    assert mask_contacts(text) == (text, False)
    assert not rules(text)


@pytest.mark.parametrize("text", [
    "do u have snapchat", "u got insta?", "lets move to discord its better there", "whats ur tele",
    "can we talk on whatsapp instead", "kik?", "d1sc0rd?", "add me on roblox", "lets go somewhere more private",
    "can i have your number", "you wanna keep talking on insta",
])
def test_requests_to_move_are_found_but_not_masked(text):
    assert rules(text) & {"contact.app_request", "contact.elsewhere", "contact.call_request"}
    assert mask_contacts(text) == (text, False)


def test_the_rest_of_the_line_survives_masking():
    assert mask_contacts("hi! my snap is lily.rose09, add me :)") == ("hi! my snap is [hidden], add me :)", True)


def test_mask_contacts_is_cheap():
    lines = ["hey whats up", "my snap is lily.rose09 add me", "text me 555 867 5309",
             "lol same, do you like minecraft?", "i love snap peas with ranch"] * 200
    start = time.perf_counter()
    for line in lines:
        mask_contacts(line)
    per_call_us = (time.perf_counter() - start) / len(lines) * 1e6
    assert per_call_us < 500, f"{per_call_us:.0f} µs a call"  # ~15 µs here; a wide margin for loaded CI
