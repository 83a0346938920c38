"""The PostgreSQL backend: the state (sources, dedup index, cursors, leases, rejects, dead
letters, destinations, profiles) and, optionally, the event log. Opened only by
``storage/factory.py``; see docs/storage.md#postgresql."""
