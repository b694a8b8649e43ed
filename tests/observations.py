"""Observations built directly (no OTLP), for engine and detector tests."""

from __future__ import annotations

from otel_processor.model import Identity, Observation

S = 1_000_000_000
H = 3600 * S
D = 24 * H
T0 = 1_700_006_400 * S  # a Wednesday, 00:00 UTC


def ident(name="arn:aws:iam::111122223333:role/deploy-api", kind="workload", group="aws:1:deploy", **kw):
    return Identity(f"{kind}:{name}", kind, name, "aws.principal.arn", group=group, **kw)


def obs(identity, t, action="secretsmanager.amazonaws.com/GetSecretValue", target="prod/db", src="10.20.0.5",
        ua="aws-sdk-go-v2/1.2", outcome="success", failure=None, signal="app", volume=1.0, trace=1, **details):
    return Observation(identity, t, signal, action, target=target, source_address=src, user_agent=ua,
                       outcome=outcome, failure_kind=failure, volume=volume,
                       trace_id=trace.to_bytes(16, "big"), span_id=trace.to_bytes(8, "big"),
                       details={k.replace("_", "."): v for k, v in details.items()})


def history(engine, identity, days=7, runs=(9, 13, 17), reads=2, **kw):
    """A deploy role that reads two secrets per run, three runs a day, from the CI range."""
    n = 0
    for day in range(days):
        for hour in runs:
            for k in range(reads):
                n += 1
                engine.observe(obs(identity, T0 + day * D + hour * H + k * S, target=f"prod/db{k}",
                                   src=f"10.20.0.{5 + k}", trace=n, **kw))
    return T0 + days * D


def sweep(engine, identity, t, n=45, src="203.0.113.77", ua="curl/8.4.0"):
    for k in range(n):
        engine.observe(obs(identity, t + k * 2 * S, target=f"prod/secret-{k}", src=src, ua=ua, trace=10_000 + k))
