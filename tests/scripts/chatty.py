"""Prints N numbered metric lines quickly (N from the first argument)."""

import sys

count = int(sys.argv[sys.argv.index("--lines") + 1]) if "--lines" in sys.argv else 100
for step in range(count):
    print(f"step={step} loss={1.0 / (step + 1):.6f} padding={'x' * 200}")
