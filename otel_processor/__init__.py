"""nhi-convergence: an OpenTelemetry processor that catches abused non-human identities.

The folders follow the data, from the wire to the verdict and back:

    hosts/       serve/ (OTLP service: receivers, forwarding, own metrics) and rotel/ (in Rotel)
      pipeline/  the batch path: read attributes, resolve, observe, engine, enrich, mask
        inputs/    vendor audit logs mapped onto the telemetry contract
        identity/  who acted: resolution rules, catalog, credential fingerprints
        observe/   what was done: a record read as an observation
        engine/    detectors, correlator, trust, incidents, bounded state
        outputs/   what leaves: nhi.* enrichment, masking, convergence events
    model.py, errors.py, yamlbind.py, anyvalue.py, otlp_json.py: plain types and helpers for all
    config.py: every setting, validated; cli.py: the ``nhi-processor`` command

Dependencies point one way (hosts -> pipeline -> the stage rooms -> model); every room's
``__init__`` says what it may import and ``tests/test_layout.py`` holds it to that.

May import: _compiled, version
"""

from .version import __version__  # noqa: F401

from . import _compiled

_compiled.install()
