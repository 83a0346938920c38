"""Consumers: processes that follow the event log and deliver it somewhere (profiles today).

``runner`` is the loop (cursor, batches, backoff, dead letters, lag), ``registry`` names
the consumers there are, ``supervisor`` runs them as processes under their leases, and
``_child`` is the entry point of one consumer's process.
"""
