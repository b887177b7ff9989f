"""Undoing obfuscation, and mapping back to the text as sent."""
from services.moderation.detectors.normalize import Views, fold


def test_confusables_and_fullwidth_fold_to_ascii_letters():
    assert fold("ѕnар").text == "snap"            # Cyrillic look-alikes
    assert fold("ＳＮＡＰ").text == "snap"          # fullwidth
    assert fold("ⓢⓝⓐⓟ").text == "snap"            # circled
    assert fold("🇸🇳🇦🇵").text == "snap"           # regional indicators
    assert fold("snäp").text == "snap"            # accents dropped


def test_keycap_digits_are_digits_and_invisible_characters_go():
    view = fold("5️⃣5️⃣5️⃣")
    assert view.text == "555"
    # the dropped marks belong to the digit before them: a span covers them
    assert view.source_span(0, 3) == (0, len("5️⃣5️⃣5️⃣"))
    assert fold("s\u200bn\u200ba\u200bp").text == "snap"


def test_number_words_become_digits():
    assert Views("im fourteen").numeric.text == "im 14"
    assert Views("im twenty six").numeric.text == "im 26"
    assert Views("five five five oh one").numeric.text == "5 5 5 0 1"
    assert Views("oh snap").numeric.text == "oh snap"  # "oh" is a zero only among digits


def test_spaced_and_leet_words_are_joined_only_when_they_spell_a_watched_word():
    assert Views("s n a p me").squashed.text == "snap me"
    assert Views("sn4pch4t").squashed.text == "snapchat"
    assert Views("k.y.s").squashed.text == "kys"
    assert Views("s e n d n u d e s").squashed.text == "send nudes"
    assert Views("r u a boy").squashed.text == "r u a boy"   # not a watched word: left alone
    assert Views("hornyyyy").squashed.text == "horny"


def test_spans_map_back_to_the_original_text():
    text = "add me: Ѕ N А P"
    views = Views(text)
    squashed = views.squashed
    start = squashed.text.index("snap")
    a, b = squashed.source_span(start, start + 4)
    assert text[a:b] == "Ѕ N А P"
