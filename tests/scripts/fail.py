"""Prints a metric and a traceback-like line, then exits with code 3."""

import sys

print("loss=2.0")
print("RuntimeError: the data loader broke", file=sys.stderr)
sys.exit(3)
