"""The README is the front door: it must name every setting a service reads."""
from pathlib import Path

import pytest

from services.ban.settings import BanSettings
from services.gateway.settings import GatewaySettings
from services.matcher.settings import MatcherSettings
from services.moderation.settings import ModerationSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("settings", [GatewaySettings, MatcherSettings, ModerationSettings, BanSettings])
def test_every_variable_is_documented(settings):
    generic = {"GRPC_HOST", "GRPC_PORT", "METRICS_PORT"}  # documented once as PARLEY_<SERVICE>_...
    missing = [name for name, _default, _help in settings.describe()
               if name not in README and name.split("_", 2)[-1] not in generic]
    assert not missing, f"README.md does not document {missing}"
