"""Rotel logs processor file: hands every batch to the shared engine (otel_processor.hosts.rotel.host)."""

from otel_processor.hosts.rotel import host as rotel_host


def process_logs(batch):
    try:
        rotel_host.instance().process("logs", batch)
    except Exception:  # noqa: BLE001 - nothing may escape into Rotel
        pass
