"""``convert`` on hostile files: what a file may expand to, how many records it may hold and how
long a line or a document may be are bounded, each refusal one line naming the file; JSON lines
are read a line at a time and written through a bounded sort window, so memory does not follow
the input's size. Files are built here in the vendors' layouts (CloudTrail JSON lines)."""

from __future__ import annotations

import gzip
import json

import pytest

from otel_processor.inputs import convert as convert_module
from otel_processor.inputs import files
from otel_processor.inputs.convert import main as convert_main


def cloudtrail_line(k: int, second: int) -> str:
    return json.dumps({
        "eventVersion": "1.09", "eventTime": f"2026-11-02T09:{second // 60:02d}:{second % 60:02d}Z",
        "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/app/i-0abc",
                         "accountId": "111122223333"},
        "sourceIPAddress": "10.0.12.34", "eventID": f"00000000-0000-4000-8000-{k:012d}",
        "recipientAccountId": "111122223333", "eventType": "AwsApiCall"})


def run(path, tmp_path, capsys) -> tuple[int, str, list[dict]]:
    out = tmp_path / "out.jsonl"
    code = convert_main([str(path)], str(out), None)
    err = capsys.readouterr().err
    written = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, err, written


def test_a_gzip_bomb_is_one_line_naming_the_file_before_it_is_read_into_memory(tmp_path, capsys):
    bomb = tmp_path / "CloudTrail.json.gz"
    with gzip.open(bomb, "wb", 9) as fh:  # 60 KB that expands to 60 MB of empty records
        fh.write(b'{"Records":[' + b"{}," * 20_000_000 + b"{}]}")
    code, err, written = run(bomb, tmp_path, capsys)
    assert code == 1 and written == []
    said = [line for line in err.splitlines() if str(bomb) in line]
    assert len(said) == 1 and "200 times at most" in said[0], err


def test_records_per_file_lines_and_documents_are_bounded(tmp_path, capsys, monkeypatch):
    many = tmp_path / "many.jsonl"
    many.write_text("".join(cloudtrail_line(k, k) + "\n" for k in range(30)))
    monkeypatch.setattr(files, "MAX_RECORDS", 20)
    code, err, _ = run(many, tmp_path, capsys)
    assert code == 1 and f"{many}: more than 20 records; split it" in err
    monkeypatch.setattr(files, "MAX_RECORDS", 5_000_000)

    long_line = tmp_path / "long.jsonl"
    long_line.write_text(cloudtrail_line(0, 0) + "\n" + '{"x":"' + "a" * 5000 + '"}\n')
    monkeypatch.setattr(files, "MAX_LINE", 4096)
    code, err, _ = run(long_line, tmp_path, capsys)
    assert code == 1 and f"{long_line}:2: a line longer than" in err

    monkeypatch.setattr(files, "MAX_LINE", 64 * 1024 * 1024)
    monkeypatch.setattr(files, "MAX_DOCUMENT", 4096)
    document = tmp_path / "pretty.json"
    document.write_text(json.dumps({"Records": [json.loads(cloudtrail_line(k, k)) for k in range(30)]}, indent=2))
    code, err, _ = run(document, tmp_path, capsys)
    assert code == 1 and f"{document}: a JSON document larger than" in err


def test_json_lines_stream_through_a_bounded_window_and_nothing_is_lost(tmp_path, capsys, monkeypatch):
    """With a window of 10 records, 50 records written out of order by a minute come out all,
    each exactly once, in time order within what the window could see."""
    monkeypatch.setattr(convert_module, "SORT_WINDOW", 10)
    order = [k + (1 if k % 2 == 0 else -1) for k in range(50)]  # neighbours swapped
    lines = tmp_path / "trail.jsonl.gz"
    with gzip.open(lines, "wt") as fh:
        for k in range(50):
            fh.write(cloudtrail_line(k, 60 + order[k]) + "\n")
    code, err, written = run(lines, tmp_path, capsys)
    assert code == 0, err
    bodies = [r["body"] for req in written for rl in req["resourceLogs"] for sl in rl["scopeLogs"]
              for r in sl["logRecords"]]
    ids = [next(kv["value"]["stringValue"] for kv in b["kvlistValue"]["values"] if kv["key"] == "eventID")
           for b in bodies]
    assert sorted(ids) == sorted(f"00000000-0000-4000-8000-{k:012d}" for k in range(50))
    times = [int(r["timeUnixNano"]) for req in written for rl in req["resourceLogs"] for sl in rl["scopeLogs"]
             for r in sl["logRecords"]]
    assert times == sorted(times)  # swaps of neighbours never cross a window's half


@pytest.mark.parametrize("body", [b"\xff\xfe not text", b"\x1f\x8b\x08\x00 truncated gzip"])
def test_unreadable_bytes_are_one_line_naming_the_file(tmp_path, capsys, body):
    bad = tmp_path / "export.json"
    bad.write_bytes(body)
    code, err, _ = run(bad, tmp_path, capsys)
    assert code == 1 and str(bad) in err and "Traceback" not in err


def test_output_cut_short_by_its_reader_is_no_traceback(tmp_path):
    """`nhi-processor convert ... --out - | head`: the reader leaving is not an error."""
    import subprocess
    import sys

    lines = tmp_path / "trail.jsonl"
    lines.write_text("".join(cloudtrail_line(k, k % 3600) + "\n" for k in range(3000)))
    done = subprocess.run(f"{sys.executable} -m otel_processor convert {lines} --out - | head -c 100",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert len(done.stdout) == 100
    assert "Traceback" not in done.stderr and "roken pipe" not in done.stderr.replace("BrokenPipe", "broken pipe"), \
        done.stderr


def test_nhi_sim_bench_names_itself_once(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "simulator.cli", "bench", "--identities", "5", "--no-progress",
                           str(tmp_path / "no-such-scenarios")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("nhi-sim") == 1 and "Traceback" not in done.stderr, done.stderr
