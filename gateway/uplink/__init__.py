"""The MQTT link to the centre: it drains the store's outbox to the broker and hands each
downlink message it receives to gateway/downlink/.

supervisor.py (`Uplink`, what the service holds) starts one link.py (`Link`: one paho client,
one thread) at a time, reconnecting with back-off; the link publishes what drain.py puts in
its window (telemetry.py builds the batches, answers.py holds command responses and resends)
and hands downlink to delivery.py. settings.py, topics.py and mqtt_client.py are what every
connection is built from.
"""
