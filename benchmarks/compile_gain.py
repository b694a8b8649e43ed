#!/usr/bin/env python3
"""What compiling each hot module gains, in instructions per record (valgrind's callgrind).

Wall-clock ratios on a shared machine move by ±20% between runs, far more than one module's
gain; instruction counts do not move at all. For each module (or group of modules that share C
types through ``.pxd`` files and must be compiled together) the full path runs under callgrind
with that module loaded from source (``NHI_PURE_PYTHON=<module>``), twice (1,024 and 5,120
records), and the difference over 4,096 records is the cost per record. setup.py compiles the
modules whose gain is worth their compile time.

    python benchmarks/compile_gain.py            # needs valgrind and the compiled build; ~15 min
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
P = "otel_processor"
CANDIDATES = {
    "(everything from source)": "1",
    "(everything compiled)": "",
    "anyvalue": f"{P}.anyvalue",
    "engine/correlator": f"{P}.engine.correlator",
    "engine/links": f"{P}.engine.links",
    "engine/peers": f"{P}.engine.peers",
    "engine/features+detectors+engine": f"{P}.engine.features,{P}.engine.detectors,{P}.engine.engine",
    "identity/resolver": f"{P}.identity.resolver",
    "identity/rules": f"{P}.identity.rules",
    "observe/record": f"{P}.observe.record",
    "outputs/enrich": f"{P}.outputs.enrich",
    "pipeline/attributes": f"{P}.pipeline.attributes",
    "pipeline/batch": f"{P}.pipeline.batch",
}
WORKLOAD = """
import pickle, sys
sys.path.insert(0, {here!r})
from throughput import _process
from otel_processor.config import ProcessorConfig
from otel_processor.pipeline import BatchProcessor
processor = BatchProcessor(ProcessorConfig())
for signal, data in pickle.load(open({batches!r}, "rb"))[: int(sys.argv[1]) // 512]:
    _process(processor, signal, data)
"""


def instructions(script: str, records: int, pure: str) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          script, str(records)], env={**os.environ, "NHI_PURE_PYTHON": pure},
                         capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main() -> int:
    sys.path.insert(0, HERE)
    from throughput import make_batches

    with tempfile.TemporaryDirectory() as tmp:
        batches = os.path.join(tmp, "batches.pkl")
        with open(batches, "wb") as fh:
            pickle.dump(make_batches(5120, 512, 500), fh)
        script = os.path.join(tmp, "workload.py")
        with open(script, "w") as fh:
            fh.write(WORKLOAD.format(here=HERE, batches=batches))
        costs = {}
        for label, pure in CANDIDATES.items():
            costs[label] = (instructions(script, 5120, pure) - instructions(script, 1024, pure)) / 4096
            print(f"{label:36} {costs[label]:10,.0f} instructions per record", flush=True)
        base = costs["(everything compiled)"]
        print("\ngain from compiling each (instructions per record saved, share of the compiled cost):")
        for label, cost in costs.items():
            if not label.startswith("("):
                print(f"  {label:34} {cost - base:8,.0f}  {(cost - base) / base:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
