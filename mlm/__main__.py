"""`python -m mlm` is the `mlm` command."""

from mlm.cli import entry

entry()
