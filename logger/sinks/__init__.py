"""Sinks: where record batches go. Each implements :class:`infertap.logger.sinks.base.Sink`."""
