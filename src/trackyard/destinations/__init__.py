"""Destinations: every event delivered onward to another API (docs/destinations.md).

``routing`` decides which events a destination gets (its filters and the Segment
``integrations`` object), ``requests`` builds each kind's HTTP requests, ``delivery``
sends them with the status classes and retries, and ``consumer`` runs one runner a
destination, each with its own cursor.
"""
