"""The `cloud:` section: defaults, relative paths, round trip, errors naming field and allowed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.sync.config import CloudConfig, CloudConfigError, parse_cloud_config


@pytest.fixture
def bundle(tmp_path: Path) -> dict[str, Any]:
    """What provisioning writes: identity, endpoint and certificate paths relative to the config dir."""
    for name in ("ca.pem", "device.crt", "device.key"):
        (tmp_path / name).write_text("x")
    return {
        "thing_name": "anc-sn-000123",
        "endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com",
        "port": 8883,
        "ca_file": "ca.pem",
        "cert_file": "device.crt",
        "key_file": "device.key",
    }


def test_provisioning_bundle_parses_with_defaults_and_resolved_paths(
    bundle: dict[str, Any], tmp_path: Path
) -> None:
    config = parse_cloud_config(bundle, tmp_path)
    assert config.ca_file == tmp_path / "ca.pem"
    assert config.transport == "awsiot"
    assert config.mqtt_client_id == "anc-sn-000123"
    assert config.keepalive_s == 60
    assert config.telemetry_topic() == "anc/anc-sn-000123/telemetry"
    assert config.spool_file(tmp_path / "state") == tmp_path / "state" / "spool.sqlite"


def test_round_trip_through_yaml_gives_the_same_config(bundle: dict[str, Any], tmp_path: Path) -> None:
    bundle |= {"transport": "paho", "mqtt_version": "3.1.1", "basic_ingest": True, "spool_path": "s.db"}
    config = parse_cloud_config(bundle, tmp_path)
    text = yaml.safe_dump({"cloud": config.to_dict()})
    again = parse_cloud_config(yaml.safe_load(text)["cloud"], "/elsewhere")
    assert again == config
    assert isinstance(again, CloudConfig)


def test_basic_ingest_publishes_telemetry_through_the_rules_topic(
    bundle: dict[str, Any], tmp_path: Path
) -> None:
    config = parse_cloud_config(bundle | {"basic_ingest": True, "basic_ingest_rule": "anc_t"}, tmp_path)
    assert config.telemetry_topic() == "$aws/rules/anc_t/anc/anc-sn-000123/telemetry"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"transport": "mqtt-sn"},
            r"cloud\.transport: 'mqtt-sn' is not allowed \(allowed values: awsiot, paho\)",
        ),
        ({"port": 70000}, r"cloud\.port: 70000 is outside \[1, 65535\]"),
        ({"keepalive_s": 5}, r"cloud\.keepalive_s: 5 is outside \[30, 1200\]"),
        ({"thing_name": "a/b#"}, r"cloud\.thing_name: 'a/b#' is not valid \(allowed: 1-128 characters"),
        (
            {"basic_ingest": "yes"},
            r"cloud\.basic_ingest: 'yes' is not allowed \(allowed values: true, false\)",
        ),
        ({"spool_max_mb": float("nan")}, r"cloud\.spool_max_mb: nan is not a number"),
        ({"colour": "blue"}, r"cloud\.colour: unknown key \(allowed keys: thing_name, endpoint"),
        ({"cert_file": "missing.crt"}, r"cloud\.cert_file: .*missing\.crt does not exist"),
        (
            {"reconnect_min_s": 10, "reconnect_max_s": 5},
            r"cloud\.reconnect_max_s: 5 is below reconnect_min_s 10",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(
    bundle: dict[str, Any], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(CloudConfigError, match=message):
        parse_cloud_config(bundle | change, tmp_path)


def test_missing_required_key_is_named(bundle: dict[str, Any], tmp_path: Path) -> None:
    del bundle["endpoint"]
    with pytest.raises(CloudConfigError, match=r"cloud\.endpoint: is required \(required keys: thing_name"):
        parse_cloud_config(bundle, tmp_path)


def test_section_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CloudConfigError, match="cloud: expected a mapping"):
        parse_cloud_config(["thing"], tmp_path)
