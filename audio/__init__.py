"""Broadcast audio: tones, clips, TTS, the PyAudio player, the amplifier relay and the broadcast queue.

Nothing here knows of MQTT or SQLite; the gateway wires it. The gateway builds
a ``Player``, an ``Amplifier`` and one ``BroadcastQueue`` from ``[audio]`` and
submits ``Broadcast`` records; the queue reports each one's statuses through
callbacks that the gateway turns into receipts. See docs/audio.md.
"""
