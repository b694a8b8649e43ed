"""What the processor writes: ``nhi.*`` enrichment on records (``enrich.py``), credential masking
(``redact.py``, which asks the native core's masker when it is built: hence ``_compiled``),
convergence events as OTLP log records (``events.py``) or OCSF findings
(``ocsf.py``), and the exceptions that keep expected events from being sent (``exceptions.py``).

May import: model, errors, yamlbind, version, anyvalue, identity, _compiled
"""
