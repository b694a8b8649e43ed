"""What an attacker with network access to the OTLP ports can make ``serve`` hold: many
concurrent large exports on one connection (gRPC) or many connections (HTTP), with or without
a bearer token configured, and the peak RSS of the service meanwhile (sampled from /proc); and
how long a small request that expands to millions of records takes to be answered, and what a
normal export beside it waits. Not a test: it reports figures (benchmarks/README.md).

    python benchmarks/flood.py [--streams 150] [--auth] [--http]   # peak RSS under a flood
    python benchmarks/flood.py --bomb     # 15 KB of gzip that is 7.8 million records
    python benchmarks/flood.py --large    # a normal export beside a request of 60,000 records
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from otlp_builders import empty_records  # noqa: E402 - the same bomb the tests send


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_serve(auth: bool, tmp: str) -> tuple[subprocess.Popen, int, int]:
    sys.path.insert(0, ROOT)
    from simulator.sink import OtlpSink

    sink = OtlpSink(keep=False).start()
    grpc_port, http_port = free_port(), free_port()
    config = os.path.join(tmp, "config.yaml")
    lines = ["service:", f"  forward: {sink.endpoint}"]
    if auth:
        with open(os.path.join(tmp, "tokens"), "w") as fh:
            fh.write("flood-test-token\n")
        lines += ["  auth:", f"    bearer_tokens_file: {tmp}/tokens"]
    with open(config, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "otel_processor", "serve", "--config", config,
                             "--listen-grpc", f"127.0.0.1:{grpc_port}", "--listen-http", f"127.0.0.1:{http_port}",
                             "--listen-admin", ""], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", grpc_port), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    proc.sink = sink
    return proc, grpc_port, http_port


def peak_during(pid: int, work) -> float:
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    try:
        work()
    finally:
        done.set()
        t.join()
    return peak[0]


def grpc_flood(port: int, streams: int, body: bytes) -> dict:
    outcomes: dict = {}
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        calls = [export.future(body, timeout=60) for _ in range(streams)]
        for call in calls:
            try:
                call.result()
                key = "OK"
            except grpc.RpcError as exc:
                key = exc.code().name
            outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


def http_flood(port: int, posts: int, body: bytes) -> dict:
    outcomes: dict = {}
    lock = threading.Lock()

    def one():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body))
                s.sendall(body)
                key = s.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "closed"
        except OSError as exc:
            key = type(exc).__name__
        with lock:
            outcomes[key] = outcomes.get(key, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(posts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def gzip_bomb(port: int) -> None:
    """15 KB of gzip that is 15.6 MB of empty records, sent while a normal export waits beside it."""
    bomb = gzip.compress(empty_records(7_800_000), 9)
    normal = logs_service_pb2.ExportLogsServiceRequest()
    record = normal.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "a normal record"
    kv = record.attributes.add()
    kv.key, kv.value.string_value = "service.name", "checkout"
    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        started = time.perf_counter()
        big = export.future(empty_records(7_800_000), timeout=120)
        time.sleep(0.3)
        t0 = time.perf_counter()
        try:
            stub.Export(normal, timeout=60)
            normal_s = time.perf_counter() - t0
        except grpc.RpcError as exc:
            normal_s = f"{exc.code().name} after {time.perf_counter() - t0:.2f}"
        try:
            big.result()
            big_answer = "OK"
        except grpc.RpcError as exc:
            big_answer = f"{exc.code().name}: {exc.details()[:120]}"
        print(f"gzip bomb ({len(bomb) >> 10} KB of gzip, 15.6 MB, 7.8 million records): answered in "
              f"{time.perf_counter() - started:.2f} s ({big_answer}); a normal export beside it took "
              f"{normal_s if isinstance(normal_s, str) else f'{normal_s * 1000:.0f} ms'}")


def large_beside(port: int, records: int = 60_000) -> None:
    """A request just under the record cap, of attributed records, and a normal export sent
    while it is processed: the normal one waits for one part (service.batch_part_records)."""
    big = logs_service_pb2.ExportLogsServiceRequest()
    scope = big.resource_logs.add().scope_logs.add()
    for k in range(records):
        record = scope.log_records.add()
        record.time_unix_nano = 1_764_000_000_000_000_000 + k * 1_000_000
        for key, value in (("user.id", f"system:serviceaccount:ns:app-{k % 500}"),
                           ("event.action", "get secrets"), ("source.address", f"10.0.{k % 200}.4")):
            kv = record.attributes.add()
            kv.key, kv.value.string_value = key, value
    normal = logs_service_pb2.ExportLogsServiceRequest()
    normal.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "a normal record"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        started = time.perf_counter()
        future = stub.Export.future(big, timeout=300)
        time.sleep(0.5)
        waits = []
        while not future.done():
            t0 = time.perf_counter()
            stub.Export(normal, timeout=60)
            waits.append(time.perf_counter() - t0)
            time.sleep(0.2)
        future.result()
        print(f"a request of {records:,} records took {time.perf_counter() - started:.1f} s; {len(waits)} normal "
              f"exports beside it waited at most {max(waits) * 1000:.0f} ms (median "
              f"{sorted(waits)[len(waits) // 2] * 1000:.0f} ms)" if waits else "no export beside it")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=150)
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--bomb", action="store_true")
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    body = empty_records(7_800_000)
    with tempfile.TemporaryDirectory() as tmp:
        proc, grpc_port, http_port = start_serve(args.auth, tmp)
        try:
            idle = rss_mib(proc.pid)
            if args.bomb:
                gzip_bomb(grpc_port)
                return
            if args.large:
                large_beside(grpc_port)
                return
            outcomes = {}

            def work():
                outcomes.update(http_flood(http_port, args.streams, body) if args.http
                                else grpc_flood(grpc_port, args.streams, body))

            peak = peak_during(proc.pid, work)
            print(f"{'HTTP' if args.http else 'gRPC'} flood, {args.streams} x {len(body) / 1e6:.1f} MB, "
                  f"auth {'on (no token sent)' if args.auth else 'off'}: idle {idle:.0f} MiB, peak {peak:.0f} MiB; "
                  f"answers {outcomes}")
        finally:
            proc.terminate()
            proc.wait(30)
            proc.sink.stop()


if __name__ == "__main__":
    main()
