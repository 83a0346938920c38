"""The event log on a NATS JetStream stream (``--log nats://...``): see ``log.py``."""
