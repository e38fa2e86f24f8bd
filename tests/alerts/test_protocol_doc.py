"""docs/protocol/asyncapi.yaml stays in step with docs/protocol.md §2 and with the code."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from audio.levels import WARNING_LEVELS
from gateway.downlink.alert_model import Alert, MsgType, Status, Tone
from gateway.downlink.command_model import Command, CommandName
from gateway.downlink.envelope import ENVELOPE_TYPES, OPTIONAL_FIELDS, REQUIRED_FIELDS
from gateway.downlink.rejections import REASONS
from tests.alerts.samples import REPO

yaml = pytest.importorskip("yaml", reason="PyYAML reads the AsyncAPI document")

TOPICS = {
    "{prefix}/station/{stationId}/state",
    "{prefix}/station/{stationId}/telemetry",
    "{prefix}/station/{stationId}/event",
    "{prefix}/station/{stationId}/receipt",
    "{prefix}/station/{stationId}/cmd/res",
    "{prefix}/alert/all",
    "{prefix}/alert/{areaCode}",
    "{prefix}/station/{stationId}/alert",
    "{prefix}/station/{stationId}/cmd",
    "{prefix}/programme/all",
    "{prefix}/programme/{areaCode}",
    "{prefix}/station/{stationId}/programme",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO / "docs" / "protocol" / "asyncapi.yaml").read_text()
    )
    return loaded


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_protocol_topic_is_a_channel(spec: dict[str, Any]) -> None:
    assert {c["address"] for c in spec["channels"].values()} == TOPICS


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    for ref in refs(spec):
        assert resolve(spec, ref) is not None


def test_schemas_match_the_code(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    envelope = schemas["Envelope"]
    assert set(envelope["required"]) == REQUIRED_FIELDS
    assert set(envelope["properties"]) == REQUIRED_FIELDS | OPTIONAL_FIELDS
    assert set(envelope["properties"]["type"]["enum"]) == ENVELOPE_TYPES
    alert = schemas["Alert"]["properties"]
    assert schemas["Level"]["enum"] == list(WARNING_LEVELS)
    assert alert["msg_type"]["enum"] == list(get_args(MsgType))
    assert alert["status"]["enum"] == list(get_args(Status))
    assert [t for t in alert["tone"]["enum"] if t] == list(get_args(Tone))
    assert schemas["Command"]["properties"]["cmd"]["enum"] == list(get_args(CommandName))
    assert set(alert) - {"language"} <= set(Alert.model_fields)
    assert "stations" in alert
    command = schemas["Command"]
    assert set(command["properties"]) == set(Command.model_fields)
    assert set(command["required"]) == {
        name for name, info in Command.model_fields.items() if info.is_required()
    }
    assert set(schemas["ReasonCode"]["enum"]) == REASONS
