"""An instance credential used off every cloud provider's published ranges, by a server-side
SDK from a rented host (GuardDuty's InstanceCredentialExfiltration.OutsideAWS): raised once the
providers' files, as downloaded, are refreshed beside the rules file; the same credential used
from inside a provider's ranges is not. Stale ranges are said at the command and at start-up.
CloudTrail records in the vendor's schema; range files in the providers' own schemas."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import pytest

from otel_processor.config import ProcessorConfig
from otel_processor.engine import EngineConfig
from otel_processor.engine.features import RULES_FILE
from otel_processor.engine.provider_ranges import ProviderRanges
from otel_processor.pipeline import BatchProcessor
from paths import ROOT
from vendor_records import S, cloudtrail, send

RANGES = os.path.join(ROOT, "tests", "testdata", "provider_ranges")
T0 = 1_762_041_600 * S
INSTANCE = "i-0a1b2c3d4e5f60718"
LINUX_SDK = "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.8"


def refresh(folder, *files) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_processor", "ranges", "refresh", *files,
                           "--out", os.path.join(folder, "provider_ranges.json")],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def rules_with_ranges(tmp_path):
    shutil.copy(RULES_FILE, tmp_path / "rules.yaml")
    done = refresh(str(tmp_path), *(os.path.join(RANGES, f) for f in sorted(os.listdir(RANGES))))
    assert done.returncode == 0, done.stderr
    assert "aws: 4 prefixes published 2026-11-30" in done.stdout
    return str(tmp_path / "rules.yaml")


@pytest.fixture
def rules_without_ranges(tmp_path):
    (tmp_path / "bare").mkdir()
    shutil.copy(RULES_FILE, tmp_path / "bare" / "rules.yaml")
    return str(tmp_path / "bare" / "rules.yaml")


def instance_role_used_from(address: str, rules_file: str | None, endpoint_account: str | None = None) -> list:
    p = BatchProcessor(ProcessorConfig(engine=EngineConfig(rules_file=rules_file)))
    p.events = []
    bodies = [cloudtrail(T0 + k * 20 * S, "app-server-role", f"prod/app/{k}", address, INSTANCE, LINUX_SDK)
              for k in range(3)]
    if endpoint_account:
        for body in bodies:  # CloudTrail's fields for a call through a VPC endpoint
            body["vpcEndpointId"] = "vpce-0f1e2d3c4b5a69788"
            body["vpcEndpointAccountId"] = endpoint_account
    send(p, bodies)
    return [f for e in p.events for f in e.findings]


def test_an_instance_credential_used_by_a_linux_sdk_from_a_rented_host_raises(rules_with_ranges):
    found = instance_role_used_from("45.137.21.88", rules_with_ranges)
    assert any(f.startswith("first_sight.instance_credential:") and "outside every cloud provider" in f
               for f in found), found


@pytest.mark.look_alike_of("test_an_instance_credential_used_by_a_linux_sdk_from_a_rented_host_raises")
def test_the_same_credential_used_from_a_providers_address_or_without_ranges_is_no_signal(
        rules_with_ranges, rules_without_ranges):
    assert instance_role_used_from("3.5.141.10", rules_with_ranges) == []
    assert instance_role_used_from("45.137.21.88", rules_without_ranges) == []


def test_the_packaged_rules_carry_the_providers_ranges_with_their_dates():
    """The shipped file, as ``ranges refresh`` wrote it from AWS's, Google Cloud's and Azure's
    published files: a rented host's address is outside, an EC2, a GCE and an Azure address are
    not, and each provider's publication date is there for the staleness check."""
    found = instance_role_used_from("45.76.13.20", None)  # a VPS provider's address
    assert any(f.startswith("first_sight.instance_credential:") for f in found), found
    for inside in ("3.5.140.20", "34.1.208.5", "20.42.65.92"):
        assert instance_role_used_from(inside, None) == [], inside
    ranges = ProviderRanges.load(os.path.join(os.path.dirname(RULES_FILE), "provider_ranges.json"))
    assert sorted(ranges.published) == ["aws", "azure", "gcp"]


def test_an_instance_credential_used_through_another_accounts_vpc_endpoint_raises(rules_without_ranges):
    """GuardDuty's InstanceCredentialExfiltration.InsideAWS as CloudTrail shows it: a private
    address, a server SDK, but the VPC endpoint belongs to an account that is not the role's."""
    found = instance_role_used_from("10.99.4.12", rules_without_ranges, endpoint_account="444455556666")
    assert any(f.startswith("first_sight.instance_credential:") and "444455556666" in f
               and "vpce-0f1e2d3c4b5a69788" in f for f in found), found


@pytest.mark.look_alike_of("test_an_instance_credential_used_through_another_accounts_vpc_endpoint_raises")
def test_the_same_credential_through_its_own_accounts_endpoint_is_no_signal(rules_without_ranges):
    assert instance_role_used_from("10.99.4.12", rules_without_ranges, endpoint_account="111122223333") == []


def test_stale_ranges_are_said_by_the_command_and_at_start_up(tmp_path, caplog):
    shutil.copy(RULES_FILE, tmp_path / "rules.yaml")
    old = tmp_path / "ip-ranges.json"
    old.write_text(open(os.path.join(RANGES, "ip-ranges.json")).read().replace("2026-11-30-22-13-07",
                                                                              "2020-01-01-00-00-00"))
    done = refresh(str(tmp_path), str(old))
    assert done.returncode == 0 and "days old (over 90)" in done.stderr
    with caplog.at_level(logging.WARNING):
        BatchProcessor(ProcessorConfig(engine=EngineConfig(rules_file=str(tmp_path / "rules.yaml"))))
    assert "provider ranges are" in caplog.text and "refresh" in caplog.text
    bad = refresh(str(tmp_path), os.path.join(ROOT, "README.md"))
    assert bad.returncode == 2 and "ranges refresh" in bad.stderr
    for name, body in (("bad-prefix.json", '{"syncToken":"1","createDate":"2026-11-30","prefixes":[{"ip_prefix":"x"}]}'),
                       ("bad-date.json", '{"syncToken":"1","creationTime":"soon","prefixes":[]}'),
                       ("nested.json", "[" * 100_000 + "]" * 100_000)):
        (tmp_path / name).write_text(body)
        bad = refresh(str(tmp_path), str(tmp_path / name))
        assert bad.returncode == 2 and name in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
