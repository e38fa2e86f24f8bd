"""What the centre sends down: the envelope's signature, the key's scope, the time floor, the
alert, command and CAP models, and intake, which answers each message with receipts and
hands accepted alerts to the broadcast queue (audio/).

An alert's way: gateway/uplink/ → envelope → intake → audio/broadcast_queue.py → the speakers.
"""
