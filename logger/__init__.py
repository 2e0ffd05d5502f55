"""infertap's sidecar side: the proxy, capture pipeline, codecs, record schema, sinks and metrics.

This package never imports :mod:`drift`.
"""

__version__ = "0.1.0"
