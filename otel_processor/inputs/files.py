"""Vendor records out of exported files, in every layout users have them in.

Files and folders (recursively: CloudTrail's ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``,
Azure storage accounts' ``.../y=/m=/d=/h=/m=/PT1H.json``); gzip recognised by its magic bytes
whatever the name; inside, any of:

- a JSON array of records, or one record;
- JSON lines (one record, or one envelope, per line);
- envelopes: ``{"Records": [...]}`` (CloudTrail), ``{"records": [...]}`` (Azure diagnostic
  settings, Event Hub), ``{"value": [...]}`` (Microsoft Graph, with ``@odata`` paging fields),
  ``{"events": [...]}`` (CloudWatch Logs exports) and ``{"logEvents": [...]}`` (CloudWatch Logs
  subscriptions), where each event's ``message`` is the record as JSON text;
- Log Analytics / Sentinel exports: the portal's CSV (``TimeGenerated [UTC]`` columns) and the
  query API's ``{"tables": [{"columns": [...], "rows": [...]}]}``.

Every record comes with where it was found (``file:line``, or ``file: record N`` in a document
without line structure), so that a record that cannot be read is named.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from .record import Unusable, time_ns

# Envelope keys whose value is the list of records, in the order they are tried.
_ENVELOPES = ("Records", "records", "value", "events", "logEvents")
# A file that is one JSON document (an array, an envelope) is parsed whole: larger ones are
# refused rather than read into memory (a CloudTrail file is a few MB). JSON lines and CSV are
# read a line at a time, whatever their size, each line at most MAX_LINE.
MAX_DOCUMENT = 128 * 1024 * 1024
MAX_LINE = 64 * 1024 * 1024
# What a gzip file may expand to: CloudTrail and Azure exports compress 10 to 30 times, so 200
# times leaves room while a 70 KB bomb stays a 14 MB file (with MIN_EXPANSION for tiny files).
MAX_EXPANSION = 200
MIN_EXPANSION = 16 * 1024 * 1024
# Records per file: past it the file is refused (a record in the millions is a crafted file, or
# one to split), so that an array of empty objects costs bounded time.
MAX_RECORDS = 5_000_000
# Extensions never holding records: skipped when a folder is walked (a file named on the command
# line is always read).
_NOT_RECORDS = (".md", ".txt", ".html", ".py", ".yaml", ".yml", ".sh", ".zip", ".parquet", ".digest")
csv.field_size_limit(64 * 1024 * 1024)


@dataclass(slots=True)
class FoundRecord:
    """One vendor record and where it came from. ``fallback_ns``: a time the envelope gave it
    (a CloudWatch event's ``timestamp``), for records that carry none of their own."""

    data: dict
    path: str
    line: int | str        # a line number, or a position ("table 0 row 3")
    fallback_ns: int | None = None
    finder: "_LineFinder | None" = None  # for a record of a JSON document: its line, when asked

    def where(self) -> str:
        """``file:line``: computed only when a record is reported (finding it costs a re-scan)."""
        if self.finder is not None:
            return f"{self.path}:{self.finder.line_of(int(self.line))}"
        return f"{self.path}:{self.line}" if isinstance(self.line, int) else f"{self.path}: {self.line}"


class FileError(ValueError):
    """A file that cannot be read as records at all (truncated gzip, broken JSON...)."""


class NotRecords(FileError):
    """A file that holds no records of any layout (a README, a licence): skipped in a folder."""


def walk(paths: Iterable[str]) -> Iterator[str]:
    """Files under ``paths``, folders walked recursively in name order, hidden entries skipped."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and not name.lower().endswith(_NOT_RECORDS):
                        yield os.path.join(root, name)
        elif os.path.exists(path):
            yield path
        else:
            raise FileError(f"{path}: no such file or folder")


class _Lines:
    """A file's lines as text, gunzipped when it starts with gzip's magic bytes (several members
    too), counting what the file expands to: past its allowance, a ``FileError`` naming it."""

    def __init__(self, path: str):
        self.path = path
        self._raw = open(path, "rb")
        head = self._raw.read(2)
        self._raw.seek(0)
        size = os.fstat(self._raw.fileno()).st_size
        self.gzipped = head == b"\x1f\x8b"
        self._stream = gzip.GzipFile(fileobj=self._raw) if self.gzipped else self._raw
        self.allowed = max(MIN_EXPANSION, size * MAX_EXPANSION) if self.gzipped else size
        self.read = 0
        self.number = 0
        self._first = True

    def close(self) -> None:
        self._raw.close()

    def line(self) -> str | None:
        """The next line (its end stripped of nothing), or None at the end of the file."""
        try:
            data = self._stream.readline(MAX_LINE + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileError(f"{self.path}: not a readable gzip file ({exc})") from None
        if not data:
            return None
        self.read += len(data)
        self.number += 1
        if len(data) > MAX_LINE:
            raise FileError(f"{self.path}:{self.number}: a line longer than {MAX_LINE >> 20} MB")
        if self.read > self.allowed:
            raise FileError(f"{self.path}: expands to more than {self.allowed >> 20} MB from "
                            f"{os.path.getsize(self.path) >> 10} KB of gzip ({MAX_EXPANSION} times at most); "
                            f"is it a vendor export?")
        if self._first:
            self._first = False
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileError(f"{self.path}:{self.number}: not UTF-8 text (byte {exc.start}); "
                            f"is it a vendor export?") from None

    def rest(self, first: str) -> str:
        """``first`` and every line after it, as one text: a document parsed whole."""
        parts = [first]
        size = len(first)
        while (line := self.line()) is not None:
            size += len(line)
            if size > MAX_DOCUMENT:
                raise FileError(f"{self.path}: a JSON document larger than {MAX_DOCUMENT >> 20} MB; "
                                f"split it (JSON lines have no such limit)")
            parts.append(line)
        return "".join(parts)


def read_text(path: str) -> str:
    """A whole file's text (bounded as ``records`` bounds it)."""
    lines = _Lines(path)
    try:
        return lines.rest("")
    finally:
        lines.close()


def records(path: str) -> Iterator[FoundRecord]:
    """Every record in one file, at most MAX_RECORDS; JSON lines and CSV a line at a time."""
    count = 0
    for found in _records(path):
        count += 1
        if count > MAX_RECORDS:
            raise FileError(f"{path}: more than {MAX_RECORDS:,} records; split it")
        yield found


def _records(path: str) -> Iterator[FoundRecord]:
    lines = _Lines(path)
    try:
        first = lines.line()
        while first is not None and not first.strip():
            first = lines.line()
        if first is None:
            return
        stripped = first.lstrip()
        if stripped[0] in "[{":
            yield from _json(lines, first, path)
        elif path.lower().removesuffix(".gz").endswith(".csv"):
            yield from _csv(lines, first, path)
        else:
            raise NotRecords(f"{path}: neither JSON nor a .csv export")
    finally:
        lines.close()


def _json(lines: _Lines, first: str, path: str) -> Iterator[FoundRecord]:
    """One document (pretty-printed, or on one line), or JSON lines: told apart by whether the
    first line is a whole value and another follows it."""
    try:
        item = orjson.loads(first)
    except orjson.JSONDecodeError:
        item = None
    if item is None:  # a document over several lines, or broken JSON
        text = lines.rest(first)
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            yield from _json_lines(text, path)  # names the line that is not JSON
            return
        yield from _from_document(document, path, text)
        return
    first_number = lines.number
    second = lines.line()
    while second is not None and not second.strip():
        second = lines.line()
    if second is None:  # the whole file was one line: a document
        yield from _from_document(item, path, first)
        return
    for data, fallback in _unwrap(item):
        yield FoundRecord(data, path, first_number, fallback)
    line = second
    while line is not None:
        if line.strip():
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise FileError(f"{path}:{lines.number}: not JSON ({exc})") from None
            for data, fallback in _unwrap(item):
                yield FoundRecord(data, path, lines.number, fallback)
        line = lines.line()


def _json_lines(text: str, path: str) -> Iterator[FoundRecord]:
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise FileError(f"{path}:{number}: not JSON ({exc})") from None
        for data, fallback in _unwrap(item):
            yield FoundRecord(data, path, number, fallback)


def _from_document(document, path: str, text: str) -> Iterator[FoundRecord]:
    tables = document.get("tables") if isinstance(document, dict) else None
    if isinstance(tables, list):
        yield from _tables(tables, path)
        return
    lines = _LineFinder(text)
    for index, (data, fallback) in enumerate(_unwrap(document)):
        yield FoundRecord(data, path, index, fallback, lines)


def _unwrap(item, fallback: int | None = None) -> Iterator[tuple[dict, int | None]]:
    """Records inside an item: envelopes opened, CloudWatch messages parsed."""
    if isinstance(item, list):
        for inner in item:
            yield from _unwrap(inner, fallback)
        return
    if not isinstance(item, dict):
        return
    for key in _ENVELOPES:
        inner = item.get(key)
        if isinstance(inner, list) and (key != "value" or "@odata.context" in item or len(item) <= 2):
            yield from _unwrap(inner, fallback)
            return
    message = item.get("message")
    if isinstance(message, str) and message[:1] == "{" and ("timestamp" in item or "ingestionTime" in item):
        # A CloudWatch Logs event: the record is its message; its timestamp (ms) is the fallback.
        try:
            parsed = orjson.loads(message)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            when = item.get("timestamp")
            yield parsed, _fallback_time(when)
            return
    yield item, fallback


def _fallback_time(value) -> int | None:
    try:
        return time_ns(value) if value not in (None, "") else None
    except Unusable:
        return None


def _tables(tables: list, path: str) -> Iterator[FoundRecord]:
    """The Log Analytics query API's answer: columns and rows, per table."""
    for t, table in enumerate(tables):
        if not isinstance(table, dict):
            continue
        names = [c.get("name") if isinstance(c, dict) else str(c) for c in table.get("columns") or ()]
        for r, row in enumerate(table.get("rows") or ()):
            if isinstance(row, list):
                yield FoundRecord(dict(zip(names, row)), path, f"table {t} row {r + 1}")


def _csv(lines: _Lines, first: str, path: str) -> Iterator[FoundRecord]:
    """A Log Analytics / Sentinel CSV export: a header row of column names, one row per record."""
    def text():
        yield first
        while (line := lines.line()) is not None:
            yield line

    reader = csv.reader(text())
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return
    if len(header) < 2:
        raise NotRecords(f"{path}: a .csv file without a header row of columns")
    try:
        for row in reader:
            if row:
                yield FoundRecord({k: v for k, v in zip(header, row) if v != ""}, path, reader.line_num)
    except csv.Error as exc:
        raise FileError(f"{path}:{reader.line_num}: {exc}") from None


class _LineFinder:
    """The line each record of a JSON document starts on, found on first use."""

    def __init__(self, text: str):
        self.text = text
        self._starts: list[int] | None = None

    def line_of(self, index: int) -> str:
        if self._starts is None:
            self._starts = _record_offsets(self.text)
        if index < len(self._starts):
            return str(self.text.count("\n", 0, self._starts[index]) + 1)
        return f"record {index + 1}"


def _record_offsets(text: str) -> list[int]:
    """Offsets of the records of an array (at the top or in an envelope) in document order."""
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if pos < len(text) and text[pos] == "{":
        # An envelope: find the record list's opening bracket after one of its keys.
        for key in _ENVELOPES:
            at = text.find(f'"{key}"', pos)
            if at >= 0:
                bracket = text.find("[", at)
                if bracket >= 0:
                    pos = bracket
                    break
        else:
            return [pos]
    if pos >= len(text) or text[pos] != "[":
        return [pos]
    offsets = []
    pos = _skip_space(text, pos + 1)
    while pos < len(text) and text[pos] != "]":
        offsets.append(pos)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
    return offsets


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
