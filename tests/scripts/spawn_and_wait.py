"""Starts a child that sleeps, writes both pids to PIDS_TO, prints a metric, then waits."""

import os
import subprocess
import sys
import time
from pathlib import Path

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
Path(os.environ["PIDS_TO"]).write_text(f"{os.getpid()} {child.pid}")
print("loss=1.0", flush=True)
if os.environ.get("IGNORE_TERM"):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(600)
