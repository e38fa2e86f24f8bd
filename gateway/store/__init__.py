"""The store: the station's SQLite outbox, where every reading, event and receipt waits until
the centre has acknowledged it, and the alert log that lets a restart resume a broadcast.

A reading's way: drivers → gateway/rules.py → here → gateway/uplink/ → the broker.
"""
