"""The store: the station's SQLite outbox, where every reading, event and receipt waits until
the centre has acknowledged it, and the alert log that lets a restart resume a broadcast.

A reading's way: drivers → gateway/rules.py → here → gateway/uplink/ → the broker.

``outbox.py`` is the `Store` and `open_store`; its parts: ``database_file.py`` (the file, its
lock, its connections), ``schema.py`` (the tables and migrations), ``reading_buffer.py``
(readings waiting for their commit), ``writer.py`` (the commits, the committer thread, a full
disk), ``records.py`` (records and their JSON), ``seq_ranges.py`` and ``state_rows.py`` (what
is sent, the status rows), ``budget.py`` (the storage budget), ``alert_log.py`` and
``alert_records.py`` (the alert log), ``reader.py`` (the uplink's reads) and ``export.py``
(``cunxiang export``).
"""
