"""Exported vendor files -> OTLP JSON lines: ``nhi-processor convert PATH... --out FILE``.

Each record becomes one OTLP log record whose body is the vendor record as it was (a map), whose
time is the record's event time, in event-time order, 512 records to a request. The processor
reads such a record natively, with the same profiles that recognised it here, so converting and
sending the files through a Collector give the same result. The output is what the Collector's
file exporter writes and its OTLP JSON file receiver and ``nhi-sim replay --from`` read.

A record whose time cannot be read is an error naming its file and line; it is not written (an
event time of 0 would put it fifty years in the past and teach the engine nonsense). A record
no profile recognises is counted and not written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from ..anyvalue import set_value
from ..otlp_json import to_otlp_json
from .dispatch import PROFILES, map_with, profile_of
from .files import FileError, NotRecords, records, walk
from .record import Mapped, SourceCount, Unusable

# Where each profile's records come from, as the OTLP resource says it.
_PROVIDER = {"cloudtrail": "aws", "entra_signin": "azure", "entra_audit": "azure", "m365": "azure",
             "gcp_audit": "gcp"}
MAX_REPORTED = 20
# Records are written in time order within a window of this many: memory stays bounded whatever
# the input's size, and exports already in time order (CloudTrail's dated folders, JSON lines
# appended as they happened) come out fully ordered. A record older than what was written
# already is written later; the processor reads such a record as history (backfill).
SORT_WINDOW = 100_000


@dataclass
class ConvertReport:
    """What ``convert`` read: per profile, and what it could not."""

    sources: dict[str, SourceCount] = field(default_factory=dict)
    files: int = 0
    files_skipped: list[str] = field(default_factory=list)
    unrecognised: int = 0
    unrecognised_examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # the first MAX_REPORTED
    error_count: int = 0
    written: int = 0
    kept: int = 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(message)

    def lines(self) -> list[str]:
        out = [f"{self.files} files read" + (f", {len(self.files_skipped)} skipped (no records)"
                                             if self.files_skipped else "")]
        for name, count in sorted(self.sources.items()):
            line = f"  {name}: {count.read} read, {count.mapped} mapped, {count.skipped} skipped"
            if count.reasons:
                first = sorted(count.reasons.items(), key=lambda kv: -kv[1])[:3]
                line += " (" + "; ".join(f"{reason}: {n}" for reason, n in first) + ")"
            out.append(line)
        if self.unrecognised:
            out.append(f"  unrecognised: {self.unrecognised} records of no known source, not written "
                       f"(e.g. {'; '.join(self.unrecognised_examples)}); --profile NAME forces one")
        out.append(f"{self.written} records written")
        if self.error_count:
            out.append(f"{self.error_count} errors:")
            out += [f"  {e}" for e in self.errors]
            if self.error_count > len(self.errors):
                out.append(f"  ... and {self.error_count - len(self.errors)} more")
        return out


def convert(paths: Iterable[str], out: TextIO, profile: str | None = None, batch_size: int = 512) -> ConvertReport:
    """Reads every record under ``paths`` and writes OTLP JSON lines to ``out``."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(sorted(PROFILES))})")
    paths = list(paths)
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such file or folder")
    report = ConvertReport()
    kept: list[tuple[int, int, str, dict]] = []
    for path in walk(paths):
        report.files += 1
        try:
            for found in records(path):
                _one(found, profile, report, kept)
                if len(kept) >= SORT_WINDOW:
                    kept.sort(key=lambda item: (item[0], item[1]))
                    half = len(kept) // 2
                    _write(kept[:half], out, batch_size, report)
                    del kept[:half]
        except NotRecords as exc:
            report.files_skipped.append(path)
            if path in paths:  # named on the command line: say why it gave nothing
                report.error(str(exc))
        except FileError as exc:
            report.error(str(exc))
    kept.sort(key=lambda item: (item[0], item[1]))
    _write(kept, out, batch_size, report)
    return report


def _write(kept: list, out: TextIO, batch_size: int, report: ConvertReport) -> None:
    for start in range(0, len(kept), batch_size):
        request = _request(kept[start:start + batch_size])
        out.write(orjson.dumps(to_otlp_json(request)).decode() + "\n")
        report.written += min(batch_size, len(kept) - start)


def _one(found, profile: str | None, report: ConvertReport, kept: list) -> None:
    name = profile or profile_of(found.data)
    if name is None:
        report.unrecognised += 1
        if len(report.unrecognised_examples) < 3:
            keys = ", ".join(list(found.data)[:5])
            report.unrecognised_examples.append(f"{found.where()} with fields {keys or 'none'}")
        return
    count = report.sources.setdefault(name, SourceCount())
    count.read += 1
    try:
        result = map_with(name, found.data, found.fallback_ns)
    except Unusable as exc:
        count.skip("no usable time")
        report.error(f"{found.where()}: {name} record: {exc}")
        return
    if isinstance(result, Mapped):
        count.mapped += 1
        when = result.time_ns
    else:
        count.skip(result.reason)
        when = result.time_ns
        if not when:
            report.error(f"{found.where()}: {name} record without a time ({result.reason})")
            return
    report.kept += 1  # the tie-breaker: records of one time stay in the order they were read
    kept.append((when, report.kept, name, found.data))


def _request(batch: list[tuple[int, int, str, dict]]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scopes: dict[str, object] = {}
    for when, _, name, data in batch:
        scope = scopes.get(name)
        if scope is None:
            resource_logs = request.resource_logs.add()
            provider = _PROVIDER.get(name)
            if provider:
                kv = resource_logs.resource.attributes.add()
                kv.key, kv.value.string_value = "cloud.provider", provider
            scope = scopes[name] = resource_logs.scope_logs.add()
            scope.scope.name = f"nhi-convergence/convert/{name}"
        record = scope.log_records.add()
        record.time_unix_nano = when
        record.observed_time_unix_nano = when
        set_value(record.body, data)
    return request


def main(paths: list[str], out_path: str, profile: str | None) -> int:
    """The ``convert`` subcommand: 0 when every record was read, 1 when some were not, 2 when
    the paths or the profile are wrong."""
    try:
        if out_path == "-":
            report = convert(paths, sys.stdout, profile)
        else:
            with open(out_path, "w", encoding="utf-8") as out:
                report = convert(paths, out, profile)
    except BrokenPipeError:
        raise  # the reader of standard output went away: the command line's main says nothing
    except (ValueError, OSError) as exc:
        print(f"nhi-processor convert: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=sys.stderr)
    if report.written == 0 and (report.unrecognised or report.files_skipped):
        print("nhi-processor convert: nothing written: no record of a known source was found "
              "(--profile NAME reads every record as one source)", file=sys.stderr)
        return 1
    return 1 if report.error_count else 0
