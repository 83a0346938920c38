"""Destinations: every event delivered onward to another API (docs/destinations.md).

``routing`` decides which events a destination gets (its filters and the Segment
``integrations`` object), ``requests`` builds each kind's HTTP requests, ``delivery``
sends them with the status classes and retries, ``parking`` keeps the retries of an
unordered destination, and ``consumer`` makes each destination a consumer of its own
(``destination:NAME``, a process each under the supervisor). ``status``, ``replay`` and
``validation`` serve the command line and the admin API alike.
"""
