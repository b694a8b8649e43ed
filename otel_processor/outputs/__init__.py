"""What the processor writes: ``nhi.*`` enrichment on records (``enrich.py``), credential masking
(``redact.py``) and convergence events as OTLP log records (``events.py``).

May import: model, anyvalue, identity
"""
