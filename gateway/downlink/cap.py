"""CAP 1.1/1.2 XML alerts in, and out for the centre tool (docs/protocol.md §6.2).

Real feeds are untidy and some are hostile, so the parser is defusedxml over
the standard library's expat with DTDs, entities and external references all
forbidden: a document with a DOCTYPE is `bad_payload`, and nothing a message
names (DTDs, entities, XIncludes, schemas, stylesheets, `uri`s) is ever
fetched. Only the CAP elements the mapping needs are read; everything else
(comments, processing instructions, `<parameter>`s, polygons, circles,
non-audio resources, an enveloped XML-DSig `<Signature>`) is ignored.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from audio.levels import Level, WarningLevel
from gateway.downlink.alert_model import (
    LANGUAGE_TAG,
    Alert,
    PayloadError,
    alert_from_fields,
    is_valid_id,
)
from gateway.downlink.payload_limits import cap_encoding_allowed, cap_identifier, check_references

CAP_1_1 = "urn:oasis:names:tc:emergency:cap:1.1"
CAP_1_2 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_NAMESPACES: frozenset[str] = frozenset({CAP_1_1, CAP_1_2})

SEVERITY_LEVELS: dict[str, WarningLevel] = {
    "extreme": Level.RED,
    "severe": Level.ORANGE,
    "moderate": Level.YELLOW,
    "minor": Level.BLUE,
    "unknown": Level.BLUE,
}
LEVEL_SEVERITIES: dict[WarningLevel, str] = {
    Level.RED: "Extreme",
    Level.ORANGE: "Severe",
    Level.YELLOW: "Moderate",
    Level.BLUE: "Minor",
}
MSG_TYPES: frozenset[str] = frozenset({"alert", "update", "cancel"})
AREA_GEOCODE_NAMES: frozenset[str] = frozenset({"gb/t2260", "adcode"})
WAV_MIME_TYPES: frozenset[str] = frozenset({"audio/wav", "audio/x-wav", "audio/wave"})
# CAP makes <expires> optional ("each recipient is free to set its own policy").
DEFAULT_LIFETIME = timedelta(hours=24)

# Encodings expat decodes itself; any other declared encoding is decoded here.
EXPAT_ENCODINGS: frozenset[str] = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1"})
XML_DECLARATION = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*([\"'])([A-Za-z][A-Za-z0-9._-]*)\1")


def _bad(detail: str, alert_id: str | None = None) -> PayloadError:
    return PayloadError("bad_payload", detail, alert_id)


def _as_expat_input(payload: bytes) -> bytes:
    """Honour the declared encoding, even multi-byte ones expat lacks (GB18030, GBK …; the accepted ones are listed in gateway/downlink/payload_limits.py)."""
    match = XML_DECLARATION.match(payload)
    if match is None:
        return payload
    declared_name = match.group(2).decode("ascii")
    if not cap_encoding_allowed(declared_name):
        raise _bad(f"declared encoding {declared_name!r} is not accepted", cap_identifier(payload))
    codec = codecs.lookup(declared_name).name
    if codec in EXPAT_ENCODINGS:
        return payload
    try:
        text = payload.decode(codec)
    except UnicodeDecodeError as exc:
        raise _bad(f"not valid {codec} ({exc})") from None
    declared = payload[: match.end()].decode("ascii", errors="replace")
    quote = match.group(1).decode("ascii")
    head = declared[: match.start(2)] + "UTF-8" + quote
    return (head + text[len(declared) :]).encode("utf-8")


def _parse_xml(payload: bytes) -> ET.Element:
    data = _as_expat_input(payload)
    try:
        root: ET.Element = SafeET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise _bad(f"forbidden XML construct ({type(exc).__name__})") from None
    except (ET.ParseError, ValueError) as exc:
        raise _bad(f"not well-formed XML ({exc})") from None
    return root


class _CapReader:
    """Reads CAP children of one namespace, as stripped text."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def text(self, parent: ET.Element, name: str) -> str:
        child = parent.find(self.q(name))
        return "" if child is None else "".join(child.itertext()).strip()

    def all(self, parent: ET.Element, name: str) -> list[ET.Element]:
        return parent.findall(self.q(name))


def _namespace_of(root: ET.Element) -> str:
    match = re.fullmatch(r"\{([^}]*)\}alert", root.tag)
    if match is None or match.group(1) not in CAP_NAMESPACES:
        raise _bad(f"root element {root.tag!r} is not a CAP 1.1 or 1.2 <alert>")
    return match.group(1)


def _cap_time(value: str, name: str, alert_id: str | None) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"<{name}> {value!r} is not a date-time", alert_id) from None
    if moment.tzinfo is None:
        raise _bad(f"<{name}> {value!r} has no time zone", alert_id)
    return moment


def _referenced_ids(value: str, alert_id: str | None) -> list[str]:
    ids = []
    triples = value.split()
    check_references(triples, alert_id)
    for triple in triples:
        parts = triple.split(",")
        if len(parts) != 3 or not parts[1]:
            raise _bad(f"<references> entry {triple!r} is not sender,identifier,sent", alert_id)
        ids.append(parts[1])
    return ids


def _stations(cap: _CapReader, root: ET.Element) -> list[str] | None:
    """`<scope>Private</scope>` with `<addresses>` names the stations (docs/protocol.md §6.2).

    Addresses are space separated (CAP 1.2 §3.2.1); a station id has no spaces, so a
    quoted address with spaces names no station. Other scopes name none: None.
    """
    if cap.text(root, "scope").casefold() != "private":
        return None
    return [address.strip('"') for address in cap.text(root, "addresses").split()]


def _chosen_info(cap: _CapReader, root: ET.Element) -> ET.Element | None:
    infos = cap.all(root, "info")
    for info in infos:
        if cap.text(info, "language").casefold().startswith("zh"):
            return info
    return infos[0] if infos else None


def _areas(cap: _CapReader, info: ET.Element) -> list[str]:
    codes = []
    for area in cap.all(info, "area"):
        for geocode in cap.all(area, "geocode"):
            name = "".join(cap.text(geocode, "valueName").split()).casefold()
            if name in AREA_GEOCODE_NAMES:
                codes.append(cap.text(geocode, "value"))
    return codes


def _audio(cap: _CapReader, info: ET.Element) -> dict[str, str] | None:
    for resource in cap.all(info, "resource"):
        mime = cap.text(resource, "mimeType").casefold()
        deref = cap.text(resource, "derefUri")
        if mime in WAV_MIME_TYPES and deref:
            return {"format": "wav", "data": "".join(deref.split())}
    return None


def _speech_parts(cap: _CapReader, info: ET.Element) -> tuple[str, str, str]:
    """An `<info>`'s (headline, description, instruction), each "" when absent."""
    headline, description, instruction = (
        cap.text(info, name) for name in ("headline", "description", "instruction")
    )
    return headline, description, instruction


def _speech_text(cap: _CapReader, info: ET.Element) -> str:
    return "\n".join(part for part in _speech_parts(cap, info) if part)


def _language(cap: _CapReader, info: ET.Element) -> str:
    """The `<info>`'s language: CAP's default `en-US` when absent, `und` when unreadable."""
    tag = cap.text(info, "language").strip().replace("_", "-") or "en-US"
    return tag if re.fullmatch(LANGUAGE_TAG, tag) else "und"


def _info_fields(
    cap: _CapReader, info: ET.Element, sent: datetime, alert_id: str | None
) -> dict[str, Any]:
    expires_text = cap.text(info, "expires")
    expires = (
        _cap_time(expires_text, "expires", alert_id) if expires_text else sent + DEFAULT_LIFETIME
    )
    return {
        "expires": expires,
        "event": cap.text(info, "event"),
        "level": SEVERITY_LEVELS.get(cap.text(info, "severity").casefold(), Level.BLUE),
        "text": _speech_text(cap, info),
        "language": _language(cap, info),
        "areas": _areas(cap, info),
        "audio": _audio(cap, info),
    }


def _no_info_fields(msg_type: str, sent: datetime, alert_id: str | None) -> dict[str, Any]:
    if msg_type != "cancel":
        raise _bad("no <info> block", alert_id)
    return {"expires": sent + DEFAULT_LIFETIME, "event": "", "level": Level.BLUE, "areas": []}


def parse_cap(payload: bytes) -> Alert:
    """Map a verified CAP 1.1/1.2 `<alert>` to an Alert, or raise PayloadError."""
    root = _parse_xml(payload)
    cap = _CapReader(_namespace_of(root))
    identifier = cap.text(root, "identifier")
    alert_id = identifier if is_valid_id(identifier) else None
    sent_text = cap.text(root, "sent")
    if not sent_text:
        raise _bad("no <sent>", alert_id)
    sent = _cap_time(sent_text, "sent", alert_id)
    msg_type = cap.text(root, "msgType").casefold()
    if msg_type not in MSG_TYPES:
        raise _bad(
            f"msgType {cap.text(root, 'msgType')!r} is not Alert, Update or Cancel", alert_id
        )
    info = _chosen_info(cap, root)
    fields: dict[str, Any] = {
        "id": identifier,
        "sender": cap.text(root, "sender"),
        "sent": sent,
        "msg_type": msg_type,
        "status": cap.text(root, "status").casefold(),
        "references": _referenced_ids(cap.text(root, "references"), alert_id),
        "stations": _stations(cap, root),
    }
    if info is None:
        fields.update(_no_info_fields(msg_type, sent, alert_id))
    else:
        fields.update(_info_fields(cap, info, sent, alert_id))
    return alert_from_fields(fields)


def speech_parts(payload: bytes) -> tuple[str, str, str] | None:
    """The chosen `<info>`'s (headline, description, instruction), for the speech.

    Its repeats say only the headline and the instruction when the whole is long
    (docs/protocol.md §9). None when the payload has no `<info>` or cannot be read.
    """
    try:
        root = _parse_xml(payload)
    except PayloadError:
        return None
    cap = _CapReader(_namespace_of(root))
    info = _chosen_info(cap, root)
    return None if info is None else _speech_parts(cap, info)


def _cap_timestamp(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def _sub(parent: ET.Element, name: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, f"{{{CAP_1_2}}}{name}")
    child.text = text
    return child


def _build_info(root: ET.Element, alert: Alert) -> None:
    info = ET.SubElement(root, f"{{{CAP_1_2}}}info")
    for name, text in (
        ("language", alert.language),
        ("category", "Safety"),
        ("event", alert.event),
        ("urgency", "Immediate"),
        ("severity", LEVEL_SEVERITIES[alert.level]),
        ("certainty", "Likely"),
        ("expires", _cap_timestamp(alert.expires)),
        ("senderName", alert.sender),
        ("description", alert.text),
    ):
        _sub(info, name, text)
    if alert.audio is not None:
        resource = ET.SubElement(info, f"{{{CAP_1_2}}}resource")
        _sub(resource, "resourceDesc", "audio")
        _sub(resource, "mimeType", "audio/wav")
        _sub(resource, "derefUri", alert.audio.model_dump(mode="json")["data"])
    for code in alert.areas:
        area = ET.SubElement(info, f"{{{CAP_1_2}}}area")
        _sub(area, "areaDesc", code)
        geocode = ET.SubElement(area, f"{{{CAP_1_2}}}geocode")
        _sub(geocode, "valueName", "GB/T 2260")
        _sub(geocode, "value", code)


def build_cap(alert: Alert) -> bytes:
    """A CAP 1.2 document for `alert` (the centre tool's `--cap`).

    CAP has no place for `clip`, `tone` or `repeat`: stations use their defaults.
    References are written as `sender,identifier,sent` with this alert's own
    sender and sent time, since only the referenced ids are known here.
    """
    ET.register_namespace("", CAP_1_2)
    root = ET.Element(f"{{{CAP_1_2}}}alert")
    sent = _cap_timestamp(alert.sent)
    for name, text in (
        ("identifier", alert.id),
        ("sender", alert.sender),
        ("sent", sent),
        ("status", alert.status.capitalize()),
        ("msgType", alert.msg_type.capitalize()),
        ("scope", "Public" if alert.stations is None else "Private"),
    ):
        _sub(root, name, text)
    if alert.stations is not None:
        _sub(root, "addresses", " ".join(alert.stations))
    if alert.references:
        refs = " ".join(f"{alert.sender},{ref},{sent}" for ref in alert.references)
        _sub(root, "references", refs)
    _build_info(root, alert)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
