"""CloudTrail writes some user agents in brackets (``[aws-cli/1.18.136 Python/3.8.5 ...]``), and the
Collector's AWS logs encoding passes them on as they are. One SDK must stay one client: an instance
that calls STS through a NAT gateway (public address, plain user agent) and S3 through a VPC
endpoint (private address, bracketed user agent) is one credential in one place, not a split."""

from __future__ import annotations

from otel_processor.engine.features import ua_family
from otel_processor.pipeline import BatchProcessor

from otlp_builders import logs

SESSION = "arn:aws:sts::111122223333:assumed-role/app-instance-role/i-0a1b2c3d4e5f60718"
KEY = "ASIAQWERTYUIOPASDFGH"
T0 = 1_760_000_000_000_000_000
CLI = "aws-cli/1.18.136 Python/3.8.5 Linux/5.10.0 botocore/1.17.59"


def _call(service: str, method: str, address: str, agent: str, minute: int) -> dict:
    return {"time": T0 + minute * 60_000_000_000, "attrs": {
        "rpc.system": "aws-api", "rpc.service": service, "rpc.method": method,
        "aws.principal.arn": SESSION, "aws.principal.type": "AssumedRole", "aws.access_key.id": KEY,
        "source.address": address, "user_agent.original": agent}}


def test_bracketed_agent_is_the_same_client_family():
    assert ua_family(f"[{CLI}]") == ua_family(CLI) == "aws-cli"
    assert ua_family("[]") != ua_family(CLI)


def test_nat_gateway_and_vpc_endpoint_calls_by_one_sdk_raise_nothing():
    processor = BatchProcessor()
    result = processor.process_logs(logs(
        {"cloud.provider": "aws"},
        _call("sts.amazonaws.com", "GetCallerIdentity", "52.95.110.1", CLI, 0),
        _call("s3.amazonaws.com", "GetObject", "10.0.12.34", f"[{CLI}]", 3),
        _call("s3.amazonaws.com", "PutObject", "10.0.12.34", f"[{CLI}]", 4)))
    assert result.attributed == 3
    assert [e.rule_name for e in result.events] == []


def test_the_same_key_from_another_network_and_another_client_still_fires():
    """The negative's twin: the fix must not blind the detector."""
    processor = BatchProcessor()
    result = processor.process_logs(logs(
        {"cloud.provider": "aws"},
        _call("sts.amazonaws.com", "GetCallerIdentity", "10.0.12.34", f"[{CLI}]", 0),
        _call("s3.amazonaws.com", "ListBuckets", "203.0.113.80", "python-requests/2.31.0", 5)))
    assert [f for e in result.events for f in e.findings if f.startswith("credential_split")], result.events
