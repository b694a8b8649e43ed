#!/usr/bin/env python3
"""Instructions per record per stage under callgrind: the figure that does not move with the
machine's load, and the regression gate for the native core (issue 27).

Each stage runs under ``valgrind --tool=callgrind`` twice, on 1,024 and on 5,120 records of
``throughput.make_batches``; the difference over 4,096 is the cost per record, without start-up
and imports. Stages:

  floor       protobuf parse and serialize of the same requests
  wire        the wire reader alone (``RequestReader.scan``: native, or nothing on the reference core)
  batch       the batch contract with the engine off (read, resolve, observe, enrich, forward bytes)
  full        the same with detection on

    python benchmarks/callgrind_stages.py            # every stage; about 10 minutes
    python benchmarks/callgrind_stages.py wire full  # some of them
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from throughput import make_batches  # noqa: E402

HEAD = """
import pickle, sys
sys.path.insert(0, {here!r})
from throughput import _process
from otel_processor.config import ProcessorConfig
from otel_processor.engine.config import EngineConfig
from otel_processor.pipeline import BatchProcessor
from otel_processor.pipeline.core import REQUESTS
batches = pickle.load(open({batches!r}, "rb"))[: int(sys.argv[1]) // 512]
processor = BatchProcessor(ProcessorConfig(engine=EngineConfig(enabled={detect})))
"""
STAGES = {
    "floor": ("protobuf parse and serialize", False,
              "for signal, data in batches:\n    REQUESTS[signal].FromString(data).SerializeToString()\n"),
    "wire": ("wire read (RequestReader.scan)", True,
             "for signal, data in batches:\n    processor._reader.scan(signal, data, 512)\n"),
    "batch": ("batch path, engine off", False, "for signal, data in batches:\n    _process(processor, signal, data)\n"),
    "full": ("full path, detection on", True, "for signal, data in batches:\n    _process(processor, signal, data)\n"),
}


def instructions(script: str, records: int) -> int:
    """The instructions one run executes. String hashing is seeded per process, which moves dict
    and set work by a few percent between runs: the seed is fixed so that a run repeats."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, script,
                           str(records)], capture_output=True, text=True, check=True, env=env)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main(argv: list[str]) -> int:
    wanted = argv or list(STAGES)
    unknown = [name for name in wanted if name not in STAGES]
    if unknown:
        print(f"callgrind_stages: no stage {', '.join(unknown)} (stages: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        batches = os.path.join(tmp, "batches.pkl")
        with open(batches, "wb") as fh:
            pickle.dump(make_batches(5120, 512, 500), fh)
        for name in wanted:
            label, detect, body = STAGES[name]
            script = os.path.join(tmp, f"{name}.py")
            with open(script, "w", encoding="utf-8") as fh:
                fh.write(HEAD.format(here=HERE, batches=batches, detect=detect) + body)
            per_record = (instructions(script, 5120) - instructions(script, 1024)) / 4096
            print(f"{label:34} {per_record:10,.0f} instructions per record", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
