"""Megabyte-sized fields an attacker may send in any attribute the processor reads.

Shared by ``tests/hosts/test_adversarial.py`` (each is processed and forwarded whole) and
``benchmarks/hostile.py`` (what each costs, in CPU-seconds and instructions): tests assert no
time bound, the benchmark reports it.
"""

from __future__ import annotations

from otlp_builders import logs, traces

MB = 1_000_000
HUGE = {
    "route": ("traces", {"http.request.method": "GET", "http.route": "/" + "a" * MB}),
    "route of words": ("traces", {"http.request.method": "GET", "http.route": "curl " * (MB // 5)}),
    "path of ids": ("traces", {"http.request.method": "GET", "url.path": "/1" * (MB // 2)}),
    "user agent": ("traces", {"http.request.method": "GET", "user_agent.original": "a" * MB}),
    "action": ("logs", {"event.category": "api", "event.action": "query" + " x" * (MB // 2), "user.id": "svc-a"}),
    "principal": ("logs", {"event.category": "api", "user.id": "svc-" + "-1" * (MB // 2) + "x"}),
    "command line": ("logs", {"event.category": "process", "event.action": "process.start", "cicd.pipeline.name": "b",
                              "process.command_line": "curl " * (MB // 5)}),
    "role path": ("logs", {"aws.principal.arn": "arn:aws:iam::1:role/" + "a/" * (MB // 2) + "/",
                           "rpc.service": "s3.amazonaws.com", "rpc.method": "GetObject"}),
    "request parameters": ("logs", {"aws.principal.arn": "arn:aws:iam::1:role/r", "rpc.method": "GetObject",
                                    "aws.request.parameters": '{"bucketName": "' + "b" * MB + '"}'}),
    "masking bait": ("logs", {"event.category": "api", "user.id": "svc-a", "message": "password=" * (MB // 9)}),
}


def huge_request(name: str):
    """(signal, request) holding one record with the field ``name`` of ``HUGE``."""
    signal, attrs = HUGE[name]
    if signal == "traces":
        return signal, traces({"service.name": "x"}, {"kind": 3, "attrs": attrs})
    return signal, logs({"service.name": "x"}, {"attrs": attrs, "body": "eyJ" * (MB // 3)})
