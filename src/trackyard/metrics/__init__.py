"""Prometheus metrics (docs/metrics.md): what the workers count, what the stores hold, the exposition.

- :mod:`trackyard.metrics.instruments`: the counters and histograms the ingest path
  increments, once per request or per commit, never per event.
- :mod:`trackyard.metrics.stores`: gauges read from the stores (store size, consumer lag,
  destinations), since other processes own them; :mod:`trackyard.metrics.consumer` reads
  them every few seconds into the cache of :mod:`trackyard.metrics.gauges`, which scrapes
  serve.
- :mod:`trackyard.metrics.exposition`: prometheus-client's multiprocess mode across
  ``serve --workers N``, and the text a scrape returns.

``prometheus_client`` is imported only from here, and only once ``serve`` has set
``PROMETHEUS_MULTIPROC_DIR``: the library picks its value store when a metric is made.
"""
