"""The batch contract (pipeline/core.py): bytes in, the bytes to forward and the events out, the
same as the batch processor gives on the parsed request; parts' bytes concatenate to one
request; what is not OTLP is an error; a batch whose processing raises leaves masked."""

from __future__ import annotations

import pytest

from otel_processor.pipeline import BatchProcessor
from otel_processor.pipeline.core import MalformedRequest, ReferenceCore, UnsafeBatch
from otlp_builders import attrs_of, logs

pytestmark = pytest.mark.both_builds


def _request():
    return logs({"service.name": "payments-api"},
                {"attrs": {"user.id": "system:serviceaccount:payments:api", "event.action": "get secrets",
                           "source.address": "10.1.2.3", "password": "hunter2-Xq9"}},
                {"attrs": {"note": "nobody did this"}})


def test_the_contract_gives_what_the_batch_processor_gives_on_the_parsed_request():
    data = _request().SerializeToString()
    processed = ReferenceCore(BatchProcessor()).process("logs", data)
    reference = _request()
    result = BatchProcessor().process_logs(reference)
    assert processed.data == reference.SerializeToString()
    assert (processed.result.records, processed.result.attributed) == (result.records, result.attributed)
    assert processed.result.records == 2
    assert b"hunter2-Xq9" not in processed.data and not processed.fell_back


def test_parts_processed_apart_concatenate_to_one_request():
    core = ReferenceCore(BatchProcessor())
    one, two = _request(), _request()
    both = core.process("logs", one.SerializeToString()).data + core.process("logs", two.SerializeToString()).data
    merged = core.parse("logs", both)
    assert sum(len(sl.log_records) for rl in merged.resource_logs for sl in rl.scope_logs) == 4
    assert attrs_of(merged.resource_logs[1].scope_logs[0].log_records[0].attributes)["nhi.identity.kind"] == "workload"


def test_bytes_that_are_not_otlp_are_an_error_naming_the_request_type():
    with pytest.raises(MalformedRequest, match="ExportLogsServiceRequest"):
        ReferenceCore(BatchProcessor()).process("logs", b"\xff\xff\xff\xff")


def test_a_batch_whose_processing_raises_leaves_masked_or_not_at_all(monkeypatch):
    processor = BatchProcessor()
    core = ReferenceCore(processor)

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(processor, "process_logs", boom)
    monkeypatch.setattr(processor, "process_views", boom)  # the spliced path of the native build
    processed = core.process("logs", _request().SerializeToString())
    assert processed.fell_back and processed.result.failed == 2
    assert b"hunter2-Xq9" not in processed.data and b"nobody did this" in processed.data
    monkeypatch.setattr(processor, "scrub", boom)
    with pytest.raises(UnsafeBatch):
        core.process("logs", _request().SerializeToString())
