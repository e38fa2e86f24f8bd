"""What the centre sends down: the envelope's signature, the key's scope, the time floor, the
alert, command and CAP models, and intake, which routes each verified message to its handler
(alerts, commands, programmes) and answers it with receipts or a response. The alert log's
broadcasts — central alerts, local alarms, speaker tests — are built in broadcasts.py and
resumed after a restart by resume.py.

An alert's way: gateway/uplink/ → envelope → intake → router → alerts → audio/broadcast_queue.py
→ the speakers.
"""
