import pytest

from services.gateway.settings import GatewaySettings
from services.matcher.settings import MatcherSettings
from services.runtime.settings import SettingsError, load_settings


def test_defaults_are_the_documented_ports():
    gateway = load_settings(GatewaySettings, {})
    assert (gateway.grpc_port, gateway.http_port, gateway.metrics_port) == (50051, 8080, 9101)
    matcher = load_settings(MatcherSettings, {})
    assert (matcher.grpc_port, matcher.metrics_port) == (50052, 9102)
    assert gateway.instance_id  # generated when unset


def test_variables_override_with_service_prefix_and_shared_names():
    s = load_settings(GatewaySettings, {"PARLEY_GATEWAY_GRPC_PORT": "6000", "PARLEY_LOG_LEVEL": "debug",
                                        "PARLEY_AMQP_URL": "amqp://u:p@h/v", "PARLEY_INSTANCE_ID": "gw-1"})
    assert (s.grpc_port, s.log_level, s.amqp_url, s.instance_id) == (6000, "debug", "amqp://u:p@h/v", "gw-1")


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(SettingsError) as caught:
        load_settings(GatewaySettings, {"PARLEY_GATEWAY_GRPC_PORT": "fifty", "PARLEY_GATEWAY_HTTP_PORT": "70000",
                                        "PARLEY_LOG_LEVEL": "LOUD", "PARLEY_DRAIN_SECONDS": "-1"})
    text = str(caught.value)
    for name in ("PARLEY_GATEWAY_GRPC_PORT", "PARLEY_GATEWAY_HTTP_PORT", "PARLEY_LOG_LEVEL",
                 "PARLEY_DRAIN_SECONDS"):
        assert name in text


def test_secrets_are_masked_in_errors_and_logs():
    s = load_settings(GatewaySettings, {"PARLEY_IP_PEPPER": "hunter2"})
    assert s.redacted()["ip_pepper"] == "***" and "hunter2" not in str(s.redacted())
