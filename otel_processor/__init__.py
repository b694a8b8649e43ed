"""nhi-convergence: an OpenTelemetry processor that catches abused non-human identities.

The detection engine is a plain library (``otel_processor.engine``); ``otel_processor.service``
hosts it as an OTLP service and ``otel_processor.rotel_host`` hosts it inside the Rotel collector.
"""

__version__ = "0.1.0"

from . import _compiled

_compiled.install()
