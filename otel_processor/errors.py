"""Errors a user can act on: each names the file, the line and the problem.

May import: (no other room)
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration, catalog or scenario file that cannot be used.

    ``str(error)`` reads ``file:line: problem`` so that start-up can print it as it is.
    """

    def __init__(self, problem: str, filename: str | None = None, line: int | None = None):
        self.problem = problem
        self.filename = filename
        self.line = line
        where = filename or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}")
