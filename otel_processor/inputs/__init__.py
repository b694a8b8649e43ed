"""Real sources mapped onto the telemetry contract: one profile per vendor audit log.

``cloudtrail.py`` reads AWS CloudTrail as the Collector's AWS logs encoding extension maps it,
and converts CloudTrail delivery files to OTLP.

May import: model, errors, anyvalue, otlp_json
"""
