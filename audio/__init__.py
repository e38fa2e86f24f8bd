"""Broadcast audio: tones, clips, TTS, the PyAudio player, the amplifier relay and the broadcast queue.

Nothing here knows of MQTT or SQLite; the gateway wires it.
"""
