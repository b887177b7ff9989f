"""The ban service's configuration from the environment."""
import pytest

from services.ban.model import DAY_MS
from services.ban.policy import Rung
from services.ban.settings import BanSettings
from services.runtime.settings import SettingsError, load_settings


def test_defaults():
    settings = load_settings(BanSettings, {})
    assert (settings.grpc_port, settings.metrics_port) == (50054, 9104)
    assert settings.database_url == "sqlite:///data/ban.db"
    rules = settings.rules()
    assert [r.describe() for r in rules.ladder.rungs] == [
        "warning", "ban 1h", "ban 1d", "ban 1w", "ban 30d", "permanent ban"]
    assert (rules.strike_expiry_ms, rules.appeal_window_ms) == (90 * DAY_MS, 20 * DAY_MS)


def test_ladder_and_windows_from_the_environment():
    settings = load_settings(BanSettings, {"PARLEY_BAN_LADDER": "warn, 2h, permanent",
                                           "PARLEY_BAN_STRIKE_EXPIRY_DAYS": "30",
                                           "PARLEY_BAN_APPEAL_WINDOW_DAYS": "7"})
    rules = settings.rules()
    assert rules.ladder.rungs[1] == Rung(True, 7200)
    assert (rules.strike_expiry_ms, rules.appeal_window_ms) == (30 * DAY_MS, 7 * DAY_MS)


@pytest.mark.parametrize("ladder", ["warn,soon", "24h,1h", ""])
def test_a_bad_ladder_stops_the_service_with_the_variable_named(ladder):
    with pytest.raises(SettingsError, match="PARLEY_BAN_LADDER"):
        load_settings(BanSettings, {"PARLEY_BAN_LADDER": ladder})


def test_database_url_from_its_variable_and_never_logged():
    url = "postgresql://parley_ban:hunter2@db:5432/parley_ban"
    settings = load_settings(BanSettings, {"PARLEY_BAN_DATABASE_URL": url})
    assert settings.database_url == url
    assert "hunter2" not in str(settings.redacted())


def test_unsupported_database_url_names_the_variable_and_hides_the_password():
    with pytest.raises(SettingsError, match="PARLEY_BAN_DATABASE_URL") as error:
        load_settings(BanSettings, {"PARLEY_BAN_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(error.value)
