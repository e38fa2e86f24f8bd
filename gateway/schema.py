"""Print the JSON Schema of the config file: `python -m gateway.schema > config/gateway.schema.json`.

Editors and the centre's provisioning tools validate station files against it;
a test keeps the committed copy equal to what the models generate.
"""

from __future__ import annotations

import json

from gateway.config.model import json_schema


def render() -> str:
    """The schema as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
