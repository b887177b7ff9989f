"""The offensive-language model: the fast path is the package's model, and
nothing is fetched from the network to load it."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[4]
TEXTS = ["hello how are you", "you are a fucking idiot", "send nudes", "kill yourself", "", "!!!", "the the a",
         "ur so pretty", "Shut UP loser loser loser", "i want to suck your dick", "what games do you play",
         "ÜBER naïve café", "12345 67890", "go die in a hole", "this fucking game keeps crashing"]


def test_the_fast_path_gives_the_packages_own_probabilities(model):
    from profanity_check import profanity_check

    expected = profanity_check.predict_prob(TEXTS)
    got = model.predict_batch(TEXTS)
    assert got == pytest.approx(list(expected), abs=1e-9)
    assert model.predict(TEXTS[1]) == pytest.approx(expected[1], abs=1e-9)


def test_the_model_loads_with_no_network():
    # any socket the loading code opens fails: it must not need one
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise RuntimeError("network used")
        class NoNetwork(socket.socket):
            connect = connect_ex = sendto = refuse
        socket.socket = NoNetwork
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from services.moderation.detectors.model import OffensiveLanguageModel
        model = OffensiveLanguageModel.load()
        assert model.predict("you are a fucking idiot") > 0.9
        print("ok", model.version)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok 1.9.1")
