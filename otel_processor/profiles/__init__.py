"""Input profiles: real sources mapped onto the telemetry contract (TELEMETRY.md)."""
