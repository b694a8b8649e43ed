"""Hosts: where the batch path meets the network. Each host owns its I/O and calls
``pipeline.BatchProcessor`` on every batch.

- ``serve/``: the standalone OTLP service between two Collector pipelines (receivers, the
  nothing-lost answers, forwarding downstream, its own metrics, state snapshots).
- ``rotel/``: the same engine in-process in the Rotel collector.

May import: model, errors, yamlbind, version, anyvalue, otlp_json, _compiled, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""
