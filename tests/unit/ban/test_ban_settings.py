"""The ban service's configuration from the environment."""
import pytest

from services.ban.settings import BanSettings
from services.runtime.settings import SettingsError, load_settings


def test_defaults():
    settings = load_settings(BanSettings, {})
    assert (settings.grpc_port, settings.metrics_port) == (50054, 9104)
    assert settings.database_url == "sqlite:///data/ban.db"


def test_database_url_from_its_variable_and_never_logged():
    url = "postgresql://parley_ban:hunter2@db:5432/parley_ban"
    settings = load_settings(BanSettings, {"PARLEY_BAN_DATABASE_URL": url})
    assert settings.database_url == url
    assert "hunter2" not in str(settings.redacted())


def test_unsupported_database_url_names_the_variable_and_hides_the_password():
    with pytest.raises(SettingsError, match="PARLEY_BAN_DATABASE_URL") as error:
        load_settings(BanSettings, {"PARLEY_BAN_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(error.value)
