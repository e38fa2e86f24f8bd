"""Limits a verified payload must keep before it is parsed for good (docs/protocol.md §6.1, §6.2, §8).

Why this module exists: a signature says who sent a message, not that its content is sane,
and a centre's software (or a captured-and-replayed message of it) can carry anything the
format allows. The review found payloads that the parsers let through or choked on:

* a CAP document declaring an encoding that is not a text encoding at all (``hex``,
  ``base64``, ``rot13``) or one that rewrites the text (``unicode_escape``, ``punycode``)
  — only the encodings real feeds use are accepted (`CAP_ENCODINGS`);
* a JSON payload naming a key twice (which one counts is up to the parser: the envelope
  already refuses them, payloads now too);
* ``references`` with hundreds of thousands of entries (at most `MAX_REFERENCES`);
* a ``resend`` range beyond what a seq can be (``0 <= from_seq <= to_seq < 2**63``).

Each breach is a ``bad_payload`` naming the message's id when it can be read, so the centre
gets a ``rejected`` receipt (or a command error) instead of silence.
"""

from __future__ import annotations

import codecs
import json
import re

from gateway.downlink.alert_model import PayloadError, is_valid_id, readable_id
from gateway.downlink.envelope import DuplicateKey, unique_keys

#: docs/protocol.md §6.1: an update or cancel names at most this many alerts.
MAX_REFERENCES = 100
#: Seqs are SQLite integers: 0 <= seq < 2**63.
MAX_SEQ = 2**63 - 1
#: CAP declared encodings accepted, as `codecs.lookup` names them: UTF-8, UTF-16, the Chinese
#: national ones, ISO-8859-x, Windows-125x and ASCII.
CAP_ENCODINGS: frozenset[str] = frozenset(
    {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "gb18030", "gbk", "gb2312"}
    | {"ascii", "latin-1", "iso8859-1"}
    | {f"iso8859-{n}" for n in range(2, 17) if n != 12}
    | {f"cp125{n}" for n in range(9)}
)
_IDENTIFIER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?identifier>\s*([^<]{1,256}?)\s*</", re.DOTALL)


def cap_encoding_allowed(name: str) -> bool:
    """True if a CAP document may declare the encoding `name` (any spelling codecs knows)."""
    try:
        return codecs.lookup(name).name in CAP_ENCODINGS
    except LookupError:
        return False


def cap_identifier(payload: bytes) -> str | None:
    """The ``<identifier>`` of a CAP document read from its raw bytes, for a receipt."""
    match = _IDENTIFIER.search(payload)
    if match is None:
        return None
    try:
        value = match.group(1).decode("ascii")
    except UnicodeDecodeError:
        return None
    return value if is_valid_id(value) else None


def check_json_payload(payload: bytes) -> None:
    """PayloadError for duplicate keys or too many references; else nothing.

    A payload that is not JSON at all is left to the parser, which says why.
    """
    try:
        obj = json.loads(payload, object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        raise PayloadError("bad_payload", str(exc), readable_id(payload)) from None
    except (ValueError, RecursionError):
        return
    if isinstance(obj, dict):
        found = obj.get("id")
        check_references(obj.get("references"), found if is_valid_id(found) else None)


def check_references(references: object, alert_id: str | None) -> None:
    """PayloadError if a list of references is longer than `MAX_REFERENCES`."""
    if isinstance(references, list) and len(references) > MAX_REFERENCES:
        raise PayloadError(
            "bad_payload",
            f"{len(references)} references; at most {MAX_REFERENCES}",
            alert_id,
        )


def check_seq(value: int, name: str) -> int:
    """A seq argument: 0 <= value < 2**63, else ValueError with a clear message."""
    if not 0 <= value <= MAX_SEQ:
        raise ValueError(f"{name} must be 0 <= {name} < 2**63, not {value}")
    return value
