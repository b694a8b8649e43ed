"""``nhi-processor rotel``: the engine in-process in the Rotel collector (``rotel`` on PyPI).

``host.py`` converts Rotel's batches to OTLP requests and back around the same batch path as
``serve``; ``processors/`` holds the two files Rotel loads.

May import: model, errors, yamlbind, anyvalue, otlp_json, _compiled, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""
