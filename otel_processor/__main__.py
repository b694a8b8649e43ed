"""``python -m otel_processor``: the ``nhi-processor`` command.

May import: cli
"""

import sys

from .cli import main

sys.exit(main())
