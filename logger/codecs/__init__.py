"""Payload codecs: KServe V1, Open Inference Protocol (V2) JSON and the V2 binary tensor extension.

Use :func:`infertap.logger.codecs.registry.decode` to decode a body; the protocol codecs and V2 datatypes are registries
that raise on duplicate registration.
"""
