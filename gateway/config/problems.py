"""How a problem in the config file is said: the file, the line, the key path, what is wrong.

Why this module exists: technicians edit the file by hand, so loading it must never stop at the
first mistake. `Reader` validates the parsed file part by part and collects every problem with
the file, the line (where one can be found), the key path (`sensors[2] ("river").port`), what
was wrong and what is allowed; `ConfigError` then reports all of them at once (as Mopidy does).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.config.sensors import SENSOR_MODELS
from gateway.downlink.scope import TRUSTED_KEY_FORMS


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the file, said so a technician can fix it."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The file cannot be used; `problems` says every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _LineIndex:
    """Finds the line of a key in the TOML text (tomllib does not keep positions)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        counters: dict[str, int] = {}
        table: tuple[str | int, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._header.match(line)
            if header:
                name = header.group(2).strip('"')
                if header.group(1) == "[[":
                    counters[name] = counters.get(name, -1) + 1
                    table = (name, counters[name])
                else:
                    table = tuple(name.split("."))
                self.lines.setdefault(table, number)
                continue
            key = self._key.match(line)
            if key:
                self.lines.setdefault((*table, key.group(1).strip('"')), number)

    def find(self, path: tuple[str | int, ...]) -> int | None:
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _key_path(path: Iterable[str | int], data: Mapping[str, Any]) -> str:
    out = ""
    node: Any = data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f' ("{node["name"]}")'
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _allowed(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return f"; allowed: {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"; it must match {ctx.get('pattern')}"
    return ""


_MESSAGES = {
    "extra_forbidden": "unknown key (a typo?)",
    "missing": "required key is missing",
}


class Reader:
    """Validates one parsed file part by part, collecting every problem."""

    def __init__(self, file: Path, text: str, data: dict[str, Any]) -> None:
        self.file = file
        self.data = data
        self.index = _LineIndex(text)
        self.problems: list[Problem] = []

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(str(self.file), self.index.find(path), _key_path(path, self.data), message)
        )

    def validate(self, model: Any, value: Any, path: tuple[str | int, ...]) -> Any:
        try:
            return TypeAdapter(model).validate_python(value)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
                message = _MESSAGES.get(error["type"], error["msg"])
                if error["type"] == "extra_forbidden":
                    message += self._suggest(model, loc)
                self.problem(path + loc, message + _allowed(error))
            return None

    def _suggest(self, model: Any, loc: tuple[str | int, ...]) -> str:
        fields = getattr(model, "model_fields", None)
        if not fields or not loc or not isinstance(loc[-1], str) or len(loc) != 1:
            return ""
        close = difflib.get_close_matches(loc[-1], list(fields), n=1)
        return f"; did you mean `{close[0]}`?" if close else f"; allowed keys: {', '.join(fields)}"


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part in SENSOR_MODELS or part in TRUSTED_KEY_FORMS)
