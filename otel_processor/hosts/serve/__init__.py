"""``nhi-processor serve``: OTLP/gRPC and OTLP/HTTP in, the batch path, OTLP out.

- ``service.py``: the one path every receiver calls; acknowledges only after downstream accepted.
- ``answers.py``: the refusals a receiver turns into status codes.
- ``grpc_receiver.py``, ``http_server.py``: the listeners (TLS, bearer tokens, limits).
- ``auth.py``: bearer tokens and the listeners' TLS.
- ``forwarder.py``: downstream export (gRPC or HTTP, TLS, headers) and what its answers mean.
- ``retries.py``: recognising a sender's retry; ``outages.py``: saying when downstream is down.
- ``metrics.py``: the processor's own metrics.

May import: model, errors, yamlbind, anyvalue, otlp_json, _compiled, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""
