#!/usr/bin/env python3
"""What an attacker's megabyte costs: CPU-seconds per hostile record and per hostile text.

The tests show that such input is processed whole and that masking reads it once per rule on
RE2 (work that does not depend on the machine); this reports the time it takes, which does.
Each case runs ``--repeat`` times on a fresh processor; the fastest run is reported, beside a
protobuf parse and serialize of the same request.

    python benchmarks/hostile.py
    python benchmarks/hostile.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")]

from hostile import HUGE, huge_request  # noqa: E402  (tests/hostile.py: the shared catalogue)

from otel_processor.outputs.redact import NATIVE_MASKER, mask_text  # noqa: E402
from otel_processor.pipeline import BatchProcessor  # noqa: E402

TEXTS = {
    "JWT prefixes": "eyJ" * 350_000,
    "password= repeated": "password=" * 120_000,
    "URL credentials repeated": "://a:" * 200_000,
    "Bearer repeated": "Bearer " * 150_000,
    "one letter": "x" * 1_000_000,
    "token= and a megabyte value": "token=" + "a1" * 500_000,
    "private key": "-----BEGIN RSA PRIVATE KEY-----" + "A" * 1_000_000,
}


def fastest(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def record_cost(name: str, repeat: int) -> tuple[float, float]:
    """(CPU-seconds through the processor, CPU-seconds to parse and serialize the same request)."""
    signal, request = huge_request(name)
    data = request.SerializeToString()

    def process():
        copy = type(request).FromString(data)
        processor = BatchProcessor()
        (processor.process_traces if signal == "traces" else processor.process_logs)(copy)
        copy.SerializeToString()

    return fastest(process, repeat), fastest(lambda: type(request).FromString(data).SerializeToString(), repeat)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", help="write the figures as JSON here")
    args = p.parse_args(argv)
    out = {"records": {}, "texts": {}}
    print(f"{'hostile record (one megabyte field)':40} {'CPU s':>8} {'floor s':>8}")
    for name in sorted(HUGE):
        cost, floor = record_cost(name, args.repeat)
        out["records"][name] = {"cpu_s": cost, "floor_cpu_s": floor}
        print(f"{name:40} {cost:8.3f} {floor:8.3f}")
    # The native masker (native/src/mask.rs) when built; the reference's mask_text beside it.
    print(f"\n{'masking a megabyte of text':40} {'native s':>8} {'Python s':>8}")
    for name, text in TEXTS.items():
        native = fastest(lambda: NATIVE_MASKER.mask(text), args.repeat) if NATIVE_MASKER is not None else None
        cost = fastest(lambda: mask_text(text), args.repeat)
        out["texts"][name] = {"cpu_s": cost, "native_cpu_s": native}
        print(f"{name:40} {'-' if native is None else f'{native:.3f}':>8} {cost:8.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
