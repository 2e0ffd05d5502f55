"""Events built the way KServe's agent builds them (kserve/kserve ``pkg/logger/handler.go`` and ``worker.go``).

One CloudEvent per request and one per 200 response, CloudEvents 1.0, binary content mode: ``id`` the request id,
``type`` ``org.kubeflow.serving.inference.request|response``, ``source`` the agent's source URI, ``time`` set when
sent, extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint``, ``metadata`` (JSON of the
selected request headers, each a list) and ``annotations`` (JSON, only when non-empty), ``Content-Type`` the
request's content type on both events, and the body unchanged. Go's ``net/http`` writes header names in canonical
form (``Ce-Id``, ``Ce-Inferenceservicename``), so they are sent that way here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


@dataclass
class Agent:
    """One KServe agent: its flags (``--inference-service`` ...) and the request headers it copies."""

    inference_service: str = "iris"
    namespace: str = "models"
    component: str = "predictor"
    endpoint: str = "default"
    source: str = "http://localhost:9081/"
    metadata: dict[str, list[str]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def event(
        self,
        ce_type: str,
        request_id: str,
        body: bytes,
        content_type: str = "application/json",
        time: dt.datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> CloudEvent:
        """The CloudEvent the agent sends for one side of an exchange."""
        attributes: dict[str, Any] = {
            "id": request_id,
            "type": ce_type,
            "source": self.source,
            "specversion": "1.0",
            "time": time or dt.datetime.now(dt.UTC),
            "datacontenttype": content_type,
            "inferenceservicename": self.inference_service,
            "namespace": self.namespace,
            "component": self.component,
            "endpoint": self.endpoint,
            "metadata": orjson.dumps(self.metadata).decode(),
        }
        if self.annotations:
            attributes["annotations"] = orjson.dumps(self.annotations).decode()
        attributes.update(extra or {})
        return CloudEvent(attributes=attributes, data=body)

    def http(self, event: CloudEvent) -> tuple[dict[str, str], bytes]:
        """Headers and body of the HTTP POST in binary mode, header names as Go writes them."""
        message = ce_http.to_binary(event, JSONFormat())
        return {_canonical(k): v for k, v in message.headers.items()}, message.body

    @staticmethod
    def kafka(event: CloudEvent) -> tuple[list[tuple[str, bytes]], bytes]:
        """Headers and value of the Kafka record Knative's KafkaSink writes in binary mode (no key)."""
        message = ce_kafka.to_binary(event, JSONFormat(), key_mapper=lambda _: None)
        return list(message.headers.items()), message.value


def _canonical(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: each dash-separated word capitalised."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
