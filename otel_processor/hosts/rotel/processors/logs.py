"""Rotel logs processor file: hands every batch to the shared engine (otel_processor.hosts.rotel.host)."""

from otel_processor.hosts.rotel import host as rotel_host


def process_logs(resource_logs):
    try:
        rotel_host.instance().process_logs(resource_logs)
    except Exception:  # noqa: BLE001 - nothing may escape into Rotel
        pass
