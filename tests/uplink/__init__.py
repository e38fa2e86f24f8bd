"""Tests of the durable outbox (gateway/store.py) and the MQTT uplink (gateway/sync.py)."""
