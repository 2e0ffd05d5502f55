"""``infertap webhook``: a mutating admission webhook that injects the sidecar into KServe predictor pods.

Modules, one job each:

- :mod:`.settings` — the webhook process's own settings (``INFERTAP_WEBHOOK_*``);
- :mod:`.injection` — what is injected: the ConfigMap document (image, ports, resources, sidecar settings);
- :mod:`.annotations` — the annotations read from pods and the per-InferenceService overrides;
- :mod:`.mutate` — the pure pod mutation: selection, rewiring, the injected container;
- :mod:`.review` — AdmissionReview ``admission.k8s.io/v1`` in, AdmissionReview with a JSONPatch out;
- :mod:`.tls` — the serving certificate, reloaded when its files change;
- :mod:`.metrics` — the webhook's Prometheus metrics;
- :mod:`.manifests` — the MutatingWebhookConfiguration to register it;
- :mod:`.server` and :mod:`.command` — the HTTPS server and the ``infertap webhook`` command.

See docs/injection.md.
"""
