"""The MQTT link to the centre: it drains the store's outbox to the broker and hands each
downlink message it receives to gateway/downlink/.
"""
