"""The package's version, in one place (pyproject.toml reads it too).

May import: (no other room)
"""

__version__ = "0.2.0"
