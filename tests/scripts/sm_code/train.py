"""A training entry point as SageMaker runs it: hyperparameters as arguments, data from
SM_CHANNEL_TRAIN, the model into SM_MODEL_DIR, metrics printed."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("-x", type=float, required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--linger", type=float, default=0.0)
args = parser.parse_args()

data = Path(os.environ["SM_CHANNEL_TRAIN"], "data.json")
offset = json.loads(data.read_text())["offset"]
if os.environ.get("PID_DIR"):
    # A child that would outlive the job if only the toolkit were stopped.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pids = {"script": os.getpid(), "child": child.pid}
    Path(os.environ["PID_DIR"], f"{os.environ['TRAINING_JOB_NAME']}.json").write_text(
        json.dumps(pids)
    )
for epoch in range(args.epochs):
    loss = (args.x - offset) ** 2 + 1.0 / (epoch + 1)
    print(f"epoch={epoch} loss={loss:.6f}", flush=True)
time.sleep(args.linger)
if args.x > float(os.environ.get("FAIL_ABOVE", "inf")):
    print("diverged: loss is nan", file=sys.stderr, flush=True)
    sys.exit(3)
Path(os.environ["SM_MODEL_DIR"], "model.json").write_text(json.dumps({"x": args.x}))
