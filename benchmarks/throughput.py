#!/usr/bin/env python3
"""Throughput, latency and memory of the processor, against a plain parse-and-serialize floor.

Everything is measured in the same run on the same serialized batches, so the ratios hold even
when the machine's absolute speed does not:

  floor     Request.FromString(bytes).SerializeToString()
  batch     the batch contract (pipeline/core.py): read, resolve, observe, enrich; engine off
            (the spliced path where the native core is built, else parse and serialize)
  full      the same with the behaviour engine on (detection included)
  grpc      end to end over loopback: client -> Service (full path) -> OtlpSink, --senders threads
  hosts     the same end to end with `nhi-processor serve` / `rotel` as a separate process, with
            the records per CPU-second its processes (Rotel's too) spent
  large     full path and end to end (most senders) again on the same number of records in
            --large-batch-size batches, against a floor run on those batches
  half      the full path's batch latency when batches arrive at half its measured rate
  classes   the full path's records per CPU-second by what names a record's identity (its own
            attributes, the resource, a vendor audit body, nothing), beside the floor
  memory    tracemalloc bytes per identity after feeding --identities distinct identities

A processor is a long-running service, so batch, full and grpc are measured in steady state:
before the clock starts, the same processor has seen --warmup-records of the same fleet over
the preceding days (other seed, earlier event time). "full path, cold start" is the same
measured run through a fresh processor, to which every identity is new.

This machine's speed is not steady (a shared virtual machine drifts by a fifth over seconds), so
every path runs --repeat times, each run right after a floor run of the same batches: "vs floor"
is the median of those paired ratios; records/s and latencies are the fastest run's.

    python benchmarks/throughput.py                 # defaults: about a minute
    python benchmarks/throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
import zlib

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_processor._compiled import compiled_modules, hot_path
from otel_processor.anyvalue import set_value
from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.engine import Engine, EngineConfig
from otel_processor.model import Identity, Observation
from otel_processor.pipeline import BatchProcessor
from otel_processor.identity.rules import IDENTITY_KEYS
from otel_processor.pipeline.core import ReferenceCore, count_records

T0 = 1_700_000_000 * 10**9
UAS = ["aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5", "Boto3/1.34.2 md/Botocore#1.34.2 ua/2.0 os/linux",
       "python-requests/2.31.0", "Go-http-client/2.0", "okhttp/4.12.0"]
API_CALLS = (("secretsmanager.amazonaws.com", "GetSecretValue"), ("s3.amazonaws.com", "GetObject"),
             ("kms.amazonaws.com", "Decrypt"), ("ssm.amazonaws.com", "GetParameter"))


def _kv(attrs, key, value):
    kv = attrs.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def _vendor_record(rec, rnd: random.Random, r: int, cloudtrail: bool) -> None:
    """A vendor audit record as a Collector delivers it: the record is the body, no attributes.
    CloudTrail as a map (CloudWatch Logs / S3 routes), Kubernetes audit as the JSON text (filelog
    without a parser)."""
    role = f"role-{r}"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.time_unix_nano // 10**9))
    if cloudtrail:
        service, method = API_CALLS[r % 4]
        set_value(rec.body, {
            "eventVersion": "1.09", "eventTime": when, "eventSource": service, "eventName": method,
            "awsRegion": "us-east-1", "sourceIPAddress": f"10.20.{rnd.randrange(4)}.{rnd.randrange(255)}",
            "userAgent": rnd.choice(UAS),
            "userIdentity": {"type": "AssumedRole", "principalId": f"AROA{r:016d}:i-{rnd.getrandbits(64):016x}",
                             "arn": f"arn:aws:sts::111122223333:assumed-role/{role}/i-{rnd.getrandbits(64):016x}",
                             "accountId": "111122223333", "accessKeyId": f"ASIA{rnd.getrandbits(64):016X}",
                             "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::111122223333:role/{role}"},
                                                "attributes": {"mfaAuthenticated": "false"}}},
            "requestParameters": {"secretId": f"prod/{rnd.choice(['db', 'api', 'queue'])}/{(r * 7 + rnd.randrange(3)) % 500}"},
            "responseElements": None, "requestID": f"{rnd.getrandbits(128):032x}", "eventID": f"{rnd.getrandbits(128):032x}",
            "readOnly": True, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "111122223333",
            "eventCategory": "Management"})
    else:
        ns = f"ns-{zlib.crc32(role.encode()) % 30}"
        rec.body.string_value = json.dumps({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"{rnd.getrandbits(128):032x}",
            "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{ns}/configmaps/app-config", "verb": "get",
            "user": {"username": f"system:serviceaccount:{ns}:{role}", "groups": ["system:serviceaccounts", "system:authenticated"],
                     "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={rnd.getrandbits(64):016x}"]}},
            "sourceIPs": [f"10.0.{rnd.randrange(4)}.{rnd.randrange(255)}"], "userAgent": "kube-client/v1.30.2",
            "objectRef": {"resource": "configmaps", "namespace": ns, "name": "app-config", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": when, "stageTimestamp": when})


def make_batches(records: int, batch_size: int, identities: int, seed: int = 7,
                 start_ns: int = T0, vendor: bool = True) -> list[tuple[str, bytes]]:
    """~1 KB records: client/server spans of services, API-key calls, CloudTrail and sign-in logs.

    ``identities`` services, API keys and roles (each role with one Kubernetes service account in
    one namespace) act in the stream, in event time from ``start_ns``. With ``vendor``, one log
    record in four is a vendor audit record as the Collector leaves it (the body, read by an
    input profile): half CloudTrail as a map, half Kubernetes audit as JSON text.
    """
    rnd = random.Random(seed)
    out = []
    t = start_ns
    made = 0
    b = 0
    while made < records:
        n = min(batch_size, records - made)
        if b % 2 == 0:
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            svc = f"svc-{rnd.randrange(identities)}"
            for key, value in (("service.name", svc), ("service.namespace", f"team-{rnd.randrange(20)}"),
                               ("service.version", "1.42.7"), ("deployment.environment.name", "production"),
                               ("host.name", f"ip-10-0-{rnd.randrange(255)}-{rnd.randrange(255)}.ec2.internal"),
                               ("k8s.pod.name", f"{svc}-7d9f8c6b5-{rnd.randrange(99999):05d}"),
                               ("telemetry.sdk.name", "opentelemetry"), ("telemetry.sdk.language", "python")):
                _kv(rs.resource.attributes, key, value)
            ss = rs.scope_spans.add()
            ss.scope.name = "opentelemetry.instrumentation.requests"
            for i in range(n):
                span = ss.spans.add()
                span.trace_id = rnd.randbytes(16)
                span.span_id = rnd.randbytes(8)
                span.parent_span_id = rnd.randbytes(8)
                t += rnd.randrange(1, 50) * 10**7
                span.start_time_unix_nano = t
                span.end_time_unix_nano = t + rnd.randrange(10**6, 10**8)
                server = i % 3 == 0
                span.kind = 2 if server else 3
                route = f"/api/v1/{rnd.choice(['orders', 'users', 'payments', 'items'])}/{{id}}"
                span.name = f"GET {route}"
                a = span.attributes
                _kv(a, "http.request.method", "GET")
                _kv(a, "http.route", route)
                _kv(a, "url.path", route.replace("{id}", str(rnd.randrange(10**6))))
                _kv(a, "url.scheme", "https")
                _kv(a, "server.address", f"api-{rnd.randrange(10)}.internal.example.com")
                _kv(a, "server.port", 443)
                _kv(a, "http.response.status_code", rnd.choice([200, 200, 200, 201, 204, 404]))
                _kv(a, "http.response.body.size", rnd.randrange(100, 50_000))
                _kv(a, "network.protocol.version", "1.1")
                _kv(a, "client.address", f"10.0.{rnd.randrange(4)}.{rnd.randrange(255)}")
                _kv(a, "user_agent.original", rnd.choice(UAS))
                _kv(a, "http.request.header.x-request-id", f"{rnd.getrandbits(128):032x}")
                _kv(a, "url.full", f"https://api-{rnd.randrange(10)}.internal.example.com"
                                   f"{route.replace('{id}', str(rnd.randrange(10**6)))}"
                                   f"?include=lines,customer,shipping&page={rnd.randrange(50)}&per_page=100")
                _kv(a, "network.peer.address", f"10.0.{rnd.randrange(4)}.{rnd.randrange(255)}")
                _kv(a, "network.peer.port", rnd.randrange(30000, 60000))
                _kv(a, "http.request.body.size", rnd.randrange(0, 2000))
                _kv(a, "thread.name", f"worker-{rnd.randrange(64)}")
                _kv(a, "code.function.name", "app.handlers.orders.OrderHandler.get")
                if server and rnd.random() < 0.5:
                    _kv(a, "http.request.header.x-api-key", f"key_{rnd.randrange(identities):08d}_{'x' * 24}")
            out.append(("traces", req.SerializeToString()))
        else:
            req = ExportLogsServiceRequest()
            rl = req.resource_logs.add()
            _kv(rl.resource.attributes, "cloud.provider", "aws")
            _kv(rl.resource.attributes, "cloud.account.id", "111122223333")
            sl = rl.scope_logs.add()
            for i in range(n):
                rec = sl.log_records.add()
                t += rnd.randrange(1, 50) * 10**7
                rec.time_unix_nano = t
                rec.observed_time_unix_nano = t + 10**9
                rec.trace_id = rnd.randbytes(16)
                a = rec.attributes
                r = rnd.randrange(identities)
                role = f"role-{r}"
                if i % 4 == 2 and vendor:
                    _vendor_record(rec, rnd, r, i % 8 == 2)
                    continue
                if i % 4 == 0:
                    _kv(a, "event.category", "authentication")
                    _kv(a, "event.action", "token.issued")
                    _kv(a, "event.outcome", "success")
                    _kv(a, "user.id", f"system:serviceaccount:ns-{zlib.crc32(role.encode()) % 30}:{role}")
                else:
                    _kv(a, "rpc.system", "aws-api")
                    # Each role calls its own few APIs (one of four service/method pairs per role
                    # family, plus AssumeRole), not a random API per record.
                    service, method = rnd.choice((API_CALLS[r % 4], API_CALLS[(r + 1) % 4],
                                                  ("sts.amazonaws.com", "AssumeRole")))
                    _kv(a, "rpc.service", service)
                    _kv(a, "rpc.method", method)
                    _kv(a, "aws.principal.arn", f"arn:aws:sts::111122223333:assumed-role/{role}/i-{rnd.getrandbits(64):016x}")
                    _kv(a, "aws.principal.type", "AssumedRole")
                    _kv(a, "aws.access_key.id", f"ASIA{rnd.getrandbits(64):016X}")
                    _kv(a, "aws.request_id", f"{rnd.getrandbits(128):032x}")
                    _kv(a, "cloud.region", "us-east-1")
                _kv(a, "source.address", f"10.20.{rnd.randrange(4)}.{rnd.randrange(255)}")
                _kv(a, "user_agent.original", rnd.choice(UAS))
                _kv(a, "aws.request.parameters", json.dumps({
                    # Each role reads its own handful of secrets, as deploy and app roles do.
                    "secretId": f"prod/{rnd.choice(['db', 'api', 'queue'])}/{(r * 7 + rnd.randrange(3)) % 500}",
                    "versionStage": "AWSCURRENT"}))
                _kv(a, "aws.response.elements", "null")
                _kv(a, "cloud.account.id", "111122223333")
                _kv(a, "aws.event.id", f"{rnd.getrandbits(128):032x}")
                rec.body.string_value = (
                    f"{{\"eventVersion\":\"1.09\",\"eventID\":\"{rnd.getrandbits(128):032x}\","
                    f"\"readOnly\":true,\"managementEvent\":true,\"recipientAccountId\":\"111122223333\","
                    f"\"eventCategory\":\"Management\",\"tlsDetails\":{{\"tlsVersion\":\"TLSv1.3\","
                    f"\"cipherSuite\":\"TLS_AES_128_GCM_SHA256\",\"clientProvidedHostHeader\":"
                    f"\"secretsmanager.us-east-1.amazonaws.com\"}}}}")
            out.append(("logs", req.SerializeToString()))
        made += n
        b += 1
    return out


CLASSES = {"traces": ExportTraceServiceRequest, "logs": ExportLogsServiceRequest}


def run_floor(batches) -> float:
    start = time.perf_counter()
    for signal, data in batches:
        CLASSES[signal].FromString(data).SerializeToString()
    return time.perf_counter() - start


def _process(processor: BatchProcessor, signal: str, data: bytes) -> bytes:
    """One batch as the OTLP service processes it: through the batch contract (bytes in, the
    bytes to forward out), the spliced path where the native core is built."""
    return ReferenceCore(processor).process(signal, data).data


def _warmed(processor: BatchProcessor, warmup) -> ReferenceCore:
    """The processor behind the batch contract, after the history ``warmup`` gives it."""
    core = ReferenceCore(processor)
    for signal, data in warmup:
        core.process(signal, data)
    return core


def run_processor(batches, processor: BatchProcessor, warmup=()) -> tuple[float, list[float]]:
    core = _warmed(processor, warmup)
    latencies = []
    start = time.perf_counter()
    for signal, data in batches:
        t = time.perf_counter()
        core.process(signal, data)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies


def paced_latencies(batches, warmup, rate: float) -> list[float]:
    """Per-batch latency of the full path when batches arrive at ``rate`` records per second, as
    one steady sender would send them: a batch is due every ``len / rate`` seconds, and its
    latency runs from when it was due (time spent waiting behind the previous one counts)."""
    core = _warmed(BatchProcessor(ProcessorConfig()), warmup)
    latencies = []
    due = time.perf_counter()
    for signal, data in batches:
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        core.process(signal, data)
        latencies.append(time.perf_counter() - due)
        due += count_records(signal, CLASSES[signal].FromString(data)) / rate
    return latencies


RECORD_CLASSES = ("identity in the record's attributes", "identity from the resource", "vendor audit body",
                  "unattributed")


def _record_class(record, is_span: bool) -> int:
    """As the batch path decides: identity attributes first, then a vendor body."""
    if {kv.key for kv in record.attributes} & IDENTITY_KEYS:
        return 0
    if not is_span and (record.body.HasField("kvlist_value") or record.body.string_value.startswith("{")):
        return 2
    return 1


def split_by_class(batches) -> dict[str, list[tuple[str, bytes]]]:
    """The stream's records regrouped by what names their identity, in batches of the stream's
    size, in stream order: the record's own attributes (API keys, principals, service accounts),
    the resource (a service's spans), a vendor audit body, or nothing (the resource's spans with
    their resource emptied: such a record is forwarded unattributed)."""
    out: dict[str, list] = {name: [] for name in RECORD_CLASSES}
    for signal, data in batches:
        request = CLASSES[signal].FromString(data)
        entries = request.resource_spans if signal == "traces" else request.resource_logs
        for cls in range(4):
            copy = CLASSES[signal].FromString(data)
            copies = copy.resource_spans if signal == "traces" else copy.resource_logs
            kept = 0
            for entry, original in zip(copies, entries):
                scopes = entry.scope_spans if signal == "traces" else entry.scope_logs
                for scope in scopes:
                    records = scope.spans if signal == "traces" else scope.log_records
                    wanted = [r for r in records
                              if _record_class(r, signal == "traces") == (1 if cls == 3 else cls)]
                    del records[:]
                    records.extend(wanted)
                    kept += len(wanted)
                if cls == 3:
                    del entry.resource.attributes[:]
            if kept:
                out[RECORD_CLASSES[cls]].append((signal, copy.SerializeToString()))
    return out


def class_rates(batches, warmup) -> dict[str, tuple[int, float, float]]:
    """Per record class: (records, records per CPU-second on the full path, the floor's on the
    same batches), each after the same history."""
    rates = {}
    for name, group in split_by_class(batches).items():
        if not group:
            continue
        n = sum(count_records(signal, CLASSES[signal].FromString(data)) for signal, data in group)
        core = ReferenceCore(BatchProcessor(ProcessorConfig()))
        for signal, data in warmup:
            core.process(signal, data)
        start = time.process_time()
        for signal, data in group:
            core.process(signal, data)
        spent = time.process_time() - start
        start = time.process_time()
        for signal, data in group:
            CLASSES[signal].FromString(data).SerializeToString()
        floor = time.process_time() - start
        rates[name] = (n, n / spent, n / floor if floor else 0.0)
    return rates


def raw_stubs(channel) -> dict:
    """OTLP Export methods that send the batches' bytes as they are (no re-serialization here)."""
    return {signal: channel.unary_unary(f"/opentelemetry.proto.collector.{ns}.v1.{svc}/Export",
                                        request_serializer=lambda b: b, response_deserializer=lambda b: b)
            for signal, ns, svc in (("traces", "trace", "TraceService"), ("logs", "logs", "LogsService"))}


def send_concurrently(raw: dict, batches, senders: int) -> list[float]:
    """``senders`` client threads (a Collector's sending_queue.num_consumers), each sending every
    ``senders``-th batch and waiting for its acknowledgement before the next; the latencies."""
    import threading

    latencies: list[float] = []
    errors: list[BaseException] = []

    def send(share) -> None:
        try:
            for signal, data in share:
                t = time.perf_counter()
                raw[signal](data, timeout=60)
                latencies.append(time.perf_counter() - t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(batches[k::senders],)) for k in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"end-to-end send failed: {errors[0]}")
    return latencies


def run_grpc(batches, records: int, warmup=(), warmup_records: int = 0, senders: int = 1) -> tuple[float, list[float]]:
    """End to end in this process: client threads (``send_concurrently``) -> Service -> OtlpSink."""
    import grpc

    from simulator.sink import OtlpSink
    from otel_processor.hosts.serve.service import Service

    with OtlpSink() as sink:
        config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None, listen_admin=None,
                                                       forward=sink.endpoint), state_dir=None)
        with Service(config) as service:
            channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}",
                                            options=[("grpc.max_send_message_length", 64 << 20)])
            raw = raw_stubs(channel)
            for signal, data in warmup:
                raw[signal](data, timeout=30)
            start = time.perf_counter()
            latencies = send_concurrently(raw, batches, senders)
            elapsed = time.perf_counter() - start
            channel.close()
        got = len(sink.spans()) + len(sink.telemetry_log_records())
        records += warmup_records
        if got < records:
            raise SystemExit(f"end-to-end lost records: sent {records}, downstream got {got}")
        if got > records:  # at-least-once: a sender's retry after its deadline
            print(f"  end to end: {got - records} records delivered twice", file=sys.stderr)
    return elapsed, latencies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (Rotel is a child of
    ``nhi-processor rotel``), from /proc."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_host_process(host: str, batches, records: int, warmup=(), warmup_records: int = 0,
                     senders: int = 1) -> tuple[float, list[float], float]:
    """The service as it is deployed: ``nhi-processor serve`` (or ``rotel``) in a process of its
    own, the senders and the sink in this one (so they do not share the service's interpreter).
    Returns (seconds until downstream had every record, batch latencies, CPU seconds the host's
    processes spent on the measured batches)."""
    import os
    import socket
    import subprocess
    import threading

    import grpc

    from otel_processor.hosts.serve.service import count_records
    from simulator.sink import CONVERGENCE_EVENT_NAME, OtlpSink

    got = [0]
    lock = threading.Lock()

    def count(signal, request) -> None:
        """Forwarded records only: the convergence events arrive in the same logs stream and are
        not records the benchmark sent."""
        n = count_records(signal, request)
        if signal == "logs":
            n -= sum(rec.event_name == CONVERGENCE_EVENT_NAME for rl in request.resource_logs
                     for sl in rl.scope_logs for rec in sl.log_records)
        with lock:
            got[0] += n

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    with OtlpSink(keep=False, on_request=count) as sink:
        port = free_port()
        args = [sys.executable, "-m", "otel_processor", host, "--listen-grpc", f"127.0.0.1:{port}", "--listen-http",
                "", "--forward", sink.endpoint, "--log-level", "ERROR"]
        if host == "serve":
            args += ["--listen-admin", ""]
        if host == "rotel":
            args += ["--listen-http", f"127.0.0.1:{free_port()}"]
        env = {k: v for k, v in os.environ.items() if k != "NHI_STATE_DIR"}
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
            grpc.channel_ready_future(channel).result(timeout=60)
            raw = raw_stubs(channel)
            for signal, data in warmup:
                raw[signal](data, timeout=60)
            deadline = time.monotonic() + 120
            while got[0] < warmup_records and time.monotonic() < deadline:
                time.sleep(0.01)
            cpu_before = _cpu_seconds(proc.pid)
            start = time.perf_counter()
            latencies = send_concurrently(raw, batches, senders)
            while got[0] < warmup_records + records and time.perf_counter() - start < 300:
                time.sleep(0.002)  # Rotel acknowledges on receipt: wait until downstream has it all
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds(proc.pid) - cpu_before
            channel.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if got[0] < warmup_records + records:
            raise SystemExit(f"{host}: sent {warmup_records + records} records, downstream got {got[0]}")
        if got[0] > warmup_records + records:  # at-least-once: a sender's retry after its deadline
            print(f"  {host}: {got[0] - warmup_records - records} records delivered twice (a retry after a "
                  "sender's deadline; see docs/operations.md)", file=sys.stderr)
    return elapsed, latencies, cpu


# Where a record's time goes, by the module a function lives in (first match wins).
STAGES = (("read", ("otel_processor/pipeline/attributes", "otel_processor/pipeline/views", "_native.read",
                    "_native.any_value", "_native.body_value", "otel_processor/inputs/",
                    "otel_processor/pipeline/vendor", "otel_processor/anyvalue")),
          ("resolve", ("otel_processor/identity/",)),
          ("mask", ("otel_processor/outputs/redact",)),
          ("observe", ("otel_processor/observe/",)),
          ("engine", ("otel_processor/engine/",)),
          ("enrich", ("otel_processor/outputs/enrich", "_native.splice")),
          ("batch loop", ("otel_processor/pipeline/batch",)),
          ("parse and write (protobuf)", ("FromString", "SerializeToString", "ParseFromString", "google/protobuf")))


WIRE_MODULE = "otel_processor._native"


def _profiled_modules() -> str:
    """``NHI_PURE_PYTHON`` for the stage breakdown: every compiled module from source, so that
    cProfile sees its functions, except the native core, which has no Python twin of the same
    shape: without it every request is masked by a Python walk that the compiled build never
    does, and the breakdown would show that walk (a quarter of the time) as the bottleneck."""
    compiled = compiled_modules()
    if WIRE_MODULE not in compiled:
        return "1"
    return ",".join(name for name in compiled if name != WIRE_MODULE)


def stage_breakdown(batches, warmup) -> dict[str, float]:
    """Share of the full path's time per stage, from cProfile's own time per function with the
    hot modules run from source (compiled ones hide their functions from the profiler) but the
    wire reader compiled (``_profiled_modules``), in a process of its own. The shares say where
    to look; compiling the other modules moves time between them."""
    import os
    import pickle
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        pickle.dump((batches, warmup), fh)
    code = f"""
import cProfile, pickle, pstats, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import throughput
batches, warmup = pickle.load(open({fh.name!r}, "rb"))
processor = throughput.BatchProcessor(throughput.ProcessorConfig())
for signal, data in warmup:
    throughput._process(processor, signal, data)
profile = cProfile.Profile()
profile.enable()
for signal, data in batches:
    throughput._process(processor, signal, data)
profile.disable()
stats = pstats.Stats(profile).stats

def stage_of(func):
    where = func[0] + ":" + func[2]
    return next((s for s, keys in throughput.STAGES if any(k in where for k in keys)), None)

shares = {{}}
for func, (_, _, own, _, callers) in stats.items():
    stage = stage_of(func)
    if stage is not None or not callers:
        shares[stage or "other"] = shares.get(stage or "other", 0.0) + own
        continue
    # a builtin or library function: its time goes to the stages that called it
    for caller, (_, _, spent, _) in callers.items():
        key = stage_of(caller) or "other"
        shares[key] = shares.get(key, 0.0) + spent
pickle.dump(shares, sys.stdout.buffer)
"""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=1800,
                              env={**os.environ, "NHI_PURE_PYTHON": _profiled_modules()})
    finally:
        os.unlink(fh.name)
    if done.returncode != 0:
        raise SystemExit(f"stage breakdown failed: {done.stderr.decode(errors='replace')[-2000:]}")
    shares = pickle.loads(done.stdout)
    total = sum(shares.values()) or 1.0
    return {stage: seconds / total for stage, seconds in sorted(shares.items(), key=lambda kv: -kv[1])}


def memory_per_identity(identities: int) -> tuple[float, int]:
    """Bytes of engine state per identity, each identity seen 5 times with realistic variety."""
    tracemalloc.start()
    engine = Engine(EngineConfig(max_identities=max(identities, 1)))
    base = tracemalloc.get_traced_memory()[0]
    rnd = random.Random(3)
    for j in range(identities):
        ident = Identity(f"api_key:{j:016x}", "api_key", f"{j:016x}", "http.request.header.x-api-key",
                         group=f"name:integration-{j % 500}")
        for r in range(5):
            engine.observe(Observation(
                ident, T0 + j * 10**6 + r * 10**9, "app", f"GET /api/v1/{rnd.choice(['a', 'b', 'c'])}/{{id}}",
                target=f"api-{rnd.randrange(5)}.example.com/api/v1", source_address=f"10.{j % 200}.{r}.7",
                user_agent=rnd.choice(UAS), country="US", outcome="success"))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / identities, engine.identities_tracked


def measure(runs: int, floor, run) -> tuple[float, float, list[float]]:
    """``run`` ``runs`` times, each right after a floor run: the median of the paired ratios (floor
    seconds / run seconds), the fastest run's seconds and its batch latencies. This machine's speed
    drifts over seconds; a ratio of two runs made back to back does not drift with it."""
    ratios, results = [], []
    for _ in range(runs):
        floor_s = floor()
        seconds, latencies = run()
        ratios.append(floor_s / seconds)
        results.append((seconds, latencies))
    ratios.sort()
    seconds, latencies = min(results, key=lambda result: result[0])
    return ratios[len(ratios) // 2], seconds, latencies


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--identities", type=int, default=100_000, help="for the memory measurement")
    p.add_argument("--stream-identities", type=int, default=2_000,
                   help="services, API keys and roles acting in the stream")
    p.add_argument("--warmup-records", type=int, default=None,
                   help="records of earlier history fed before measuring (default: --records)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of the floor and of each in-process path; the fastest counts (timeit's rule: "
                        "the slower runs measured the machine's other work, not this code)")
    p.add_argument("--large-batch-size", type=int, default=8192,
                   help="also run the full path and end to end with the most senders on the same number of "
                        "records in batches this large (a Collector's batch processor at its default "
                        "send_batch_size); 0 skips")
    p.add_argument("--senders", type=int, nargs="+", default=[1, 4],
                   help="concurrent senders for the end-to-end runs (default: 1 and 4)")
    p.add_argument("--hosts", nargs="*", default=["serve", "rotel"], choices=["serve", "rotel"],
                   help="also measure these hosts as separate processes (records per CPU-second)")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown (cProfile)")
    p.add_argument("--json", help="write the figures here too")
    p.add_argument("--no-vendor", action="store_true",
                   help="leave vendor audit bodies out of the stream (the stream before issue 11)")
    args = p.parse_args(argv)

    batches = make_batches(args.records, args.batch_size, args.stream_identities, vendor=not args.no_vendor)
    warm_n = args.records if args.warmup_records is None else args.warmup_records
    # The preceding history ends before the measured stream starts (~0.25 s per record).
    warmup = make_batches(warm_n, args.batch_size, args.stream_identities, seed=8,
                          start_ns=T0 - 2 * 86_400 * 10**9, vendor=not args.no_vendor) if warm_n else []
    size = sum(len(d) for _, d in batches) / args.records
    print(f"{args.records} records in {len(batches)} batches, {size:.0f} bytes per record on the wire; "
          f"{warm_n} records of history first; best of {max(1, args.repeat)} runs; {hot_path()}")
    run_floor(batches[:20])  # warm caches
    repeat = max(1, args.repeat)
    floors: list[float] = []

    def paired(run) -> tuple[float, float, list[float]]:
        return measure(repeat, lambda: floors.append(run_floor(batches)) or floors[-1], run)

    # Each run of a path is a fresh processor fed the same history, so every run measures the same work.
    batch = paired(lambda: run_processor(
        batches, BatchProcessor(ProcessorConfig(engine=EngineConfig(enabled=False))), warmup))
    full = paired(lambda: run_processor(batches, BatchProcessor(ProcessorConfig()), warmup))
    cold = paired(lambda: run_processor(batches, BatchProcessor(ProcessorConfig())))
    half_rate = args.records / full[1] / 2
    half = paced_latencies(batches, warmup, half_rate)
    grpc = {k: paired(lambda k=k: run_grpc(batches, args.records, warmup, warm_n, k)) for k in args.senders}
    large_rows = []
    if args.large_batch_size:
        large = make_batches(args.records, args.large_batch_size, args.stream_identities, vendor=not args.no_vendor)
        k = max(args.senders)
        label = f"{args.large_batch_size:,}-record batches"

        def against_large_floor(run) -> tuple[float, float, list[float]]:
            # the floor on the same large batches; the rates are comparable as they are
            return measure(repeat, lambda: run_floor(large), run)

        large_rows = [
            (f"full path, {label}",
             *against_large_floor(lambda: run_processor(large, BatchProcessor(ProcessorConfig()), warmup))),
            (f"end to end, {k} sender{'s' if k > 1 else ''}, {label}",
             *against_large_floor(lambda: run_grpc(large, args.records, warmup, warm_n, k))),
        ]
    hosts = {}
    for host in args.hosts:
        for k in (args.senders if host == "serve" else [max(args.senders)]):
            hosts[(host, k)] = run_host_process(host, batches, args.records, warmup, warm_n, k)
    stages = {} if args.no_stages else stage_breakdown(batches, warmup)
    by_class = class_rates(batches, warmup)
    mem, tracked = memory_per_identity(args.identities)

    n = args.records
    floor = min(floors)
    rows = [("parse+serialize (floor)", 1.0, floor, None), ("batch path, engine off", *batch),
            ("full path, detection on", *full), ("full path, cold start", *cold)]
    rows += [(f"end to end, gRPC, {k} sender{'s' if k > 1 else ''}", *grpc[k]) for k in args.senders]
    rows += large_rows
    result = {"records": n, "batch_size": args.batch_size, "large_batch_size": args.large_batch_size,
              "senders": args.senders, "bytes_per_record": round(size), "warmup_records": warm_n,
              "repeat": max(1, args.repeat), "vendor_records": not args.no_vendor,
              "compiled_modules": compiled_modules()}
    width = max(len(row[0]) for row in rows)
    print(f"{'path':{width}} {'records/s':>12} {'vs floor':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, ratio, seconds, lat in rows:
        rate = n / seconds
        p50 = f"{pct(lat, 0.5):8.2f}" if lat else f"{'':8}"
        p99 = f"{pct(lat, 0.99):8.2f}" if lat else f"{'':8}"
        print(f"{name:{width}} {rate:12,.0f} {ratio:9.1%} {p50} {p99}")
        result[name] = {"records_per_s": round(rate), "ratio_to_floor": round(ratio, 4),
                        "p50_ms": round(pct(lat, 0.5), 3) if lat else None,
                        "p99_ms": round(pct(lat, 0.99), 3) if lat else None}
    full_rate = n / full[1]
    print(f"full path at half its capacity ({half_rate:,.0f} records/s, {args.batch_size}-record batches, "
          f"one sender): p50 {pct(half, 0.5):.2f} ms, p99 {pct(half, 0.99):.2f} ms per batch")
    result["full path at half capacity"] = {"records_per_s": round(half_rate), "p50_ms": round(pct(half, 0.5), 3),
                                            "p99_ms": round(pct(half, 0.99), 3)}
    for k in args.senders:
        share = (n / grpc[k][1]) / full_rate
        print(f"end to end with {k} sender{'s' if k > 1 else ''}: {share:.0%} of the full path's rate")
        result[f"end to end, gRPC, {k} sender{'s' if k > 1 else ''}"]["share_of_full_path"] = round(share, 4)
    if hosts:
        print(f"\nseparate processes (senders and sink here, the host on its own): {'records/s':>10} "
              f"{'per CPU-s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for (host, k), (seconds, lat, cpu) in hosts.items():
        name = f"{'nhi-processor serve' if host == 'serve' else 'Rotel with the processor'}, {k} sender{'s' if k > 1 else ''}"
        print(f"{name:58} {n / seconds:10,.0f} {n / cpu if cpu else 0:10,.0f} {pct(lat, 0.5):8.2f} {pct(lat, 0.99):8.2f}")
        result[name] = {"records_per_s": round(n / seconds), "records_per_cpu_s": round(n / cpu) if cpu else None,
                        "p50_ms": round(pct(lat, 0.5), 3), "p99_ms": round(pct(lat, 0.99), 3)}
    if stages:
        per_record_us = full[1] / n * 1e6
        print(f"\nwhere the full path's time goes (cProfile's shares, modules from source but the wire reader, applied to the compiled "
              f"full path's {per_record_us:.1f} us per record):")
        for stage, share in stages.items():
            print(f"  {stage:28} {share:6.1%} {share * per_record_us:8.2f} us")
        for k in args.senders:
            extra = (grpc[k][1] - full[1]) / n * 1e6
            print(f"  {'gRPC receive, forward, wait':28} {'':6} {extra:8.2f} us more per record end to end "
                  f"with {k} sender{'s' if k > 1 else ''}")
        result["stages"] = {stage: round(share, 4) for stage, share in stages.items()}
    print(f"\nfull path by record class (CPU time of this process; the floor on the same batches):")
    print(f"  {'record class':38} {'records':>8} {'per CPU-s':>10} {'us/record':>10} {'floor per CPU-s':>16}")
    for name, (count, rate, floor_rate) in by_class.items():
        print(f"  {name:38} {count:8,} {rate:10,.0f} {1e6 / rate:10.1f} {floor_rate:16,.0f}")
    result["record_classes"] = {name: {"records": count, "records_per_cpu_s": round(rate),
                                       "floor_per_cpu_s": round(floor_rate)}
                                for name, (count, rate, floor_rate) in by_class.items()}
    print(f"engine state: {mem:,.0f} bytes per identity with {tracked:,} identities tracked")
    result["bytes_per_identity"] = round(mem)
    result["identities_tracked"] = tracked
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
