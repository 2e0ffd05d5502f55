"""Sinks: where record batches go. Each implements :class:`logger.sinks.base.Sink`."""
