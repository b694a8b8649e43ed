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


def instance_role_used_from(address: str, rules_file: str) -> list:
    p = BatchProcessor(ProcessorConfig(engine=EngineConfig(rules_file=rules_file)))
    p.events = []
    send(p, [cloudtrail(T0 + k * 20 * S, "app-server-role", f"prod/app/{k}", address, INSTANCE, LINUX_SDK)
             for k in range(3)])
    return [f for e in p.events for f in e.findings]


def test_an_instance_credential_used_by_a_linux_sdk_from_a_rented_host_raises(rules_with_ranges):
    found = instance_role_used_from("45.137.21.88", rules_with_ranges)
    assert any(f.startswith("first_sight.instance_credential:") and "outside every cloud provider" in f
               for f in found), found


@pytest.mark.look_alike_of("test_an_instance_credential_used_by_a_linux_sdk_from_a_rented_host_raises")
def test_the_same_credential_used_from_a_providers_address_or_without_ranges_is_no_signal(rules_with_ranges):
    assert instance_role_used_from("3.5.141.10", rules_with_ranges) == []
    assert instance_role_used_from("45.137.21.88", RULES_FILE) == []  # no ranges beside the packaged rules


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
