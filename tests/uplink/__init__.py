"""Tests of the durable outbox (gateway/store/outbox.py) and the MQTT uplink (gateway/uplink/)."""
