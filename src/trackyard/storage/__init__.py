"""Storage: what a backend provides (``base``), the one factory that opens the configured
backends (``factory``), and the backends themselves (``sqlite/``, the embedded default).

No module outside this package names a concrete backend.
"""
