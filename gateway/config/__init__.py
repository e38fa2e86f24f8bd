"""The station's configuration: one TOML file read into pydantic models (docs/config.md).

Why this package exists: technicians edit the file by hand, so loading it must never stop at the
first mistake, and the models and the loader that reports every mistake at once are too much for
one module. Its modules:

- `sections`: the one-table sections (station, mqtt, storage, sync, security, audio,
  microphone);
- `sensors`: the ``[[sensors]]`` tables, one model per type of drivers/registry.py;
- `rules`: the ``[[rules]]`` tables (local alarms);
- `model`: `Config`, the whole file, and its JSON Schema;
- `problems`: `Problem`, `ConfigError` and the reader that collects problems with their lines;
- `loader`: `load_config`, the checks across sections and the resolved paths.
"""
