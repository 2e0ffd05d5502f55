"""Forward mode (``INFERTAP_CAPTURE_PLACEMENT=forward``): a thin sidecar that frames exchanges into a raw spool and
ships them to ``infertap collector``, which decodes and writes them (docs/forward-protocol.md).

Nothing in this package imports NumPy or pyarrow.
"""
