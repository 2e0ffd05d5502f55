"""``infertap collector``: receives the CloudEvents of KServe's own payload logger and writes them as records.

Modules, one job each: :mod:`.events` (HTTP and Kafka messages to event halves), :mod:`.journal` (halves durable on
disk before they are acknowledged), :mod:`.pairing` (request and response joined by id within a bounded window),
:mod:`.records` (a pair or a lone half to a record, through the sidecar's codecs), :mod:`.writer` (the thread that
encodes and writes records through the sinks), :mod:`.join` (halves written by different replicas joined by id in
the reader), :mod:`.server` (HTTP receiver, Kafka consumer, admin endpoints, lifecycle). See docs/collector.md.
"""
