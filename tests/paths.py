"""Where the tests find the repository's files, wherever in ``tests/`` a test lives."""

from __future__ import annotations

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
PACKAGE = os.path.join(ROOT, "otel_processor")
TESTDATA = os.path.join(TESTS, "testdata")
CAPTURES = os.path.join(TESTDATA, "captures")
VENDOR_FIXTURES = os.path.join(PACKAGE, "inputs", "testdata")
