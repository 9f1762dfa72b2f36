"""Writes its arguments and its params file to the path in ECHO_TO, then prints a metric."""

import json
import os
import sys
from pathlib import Path

Path(os.environ["ECHO_TO"]).write_text(
    json.dumps(
        {
            "argv": sys.argv[1:],
            "params": json.loads(Path(os.environ["TUNER_PARAMS_FILE"]).read_text()),
            "cwd": os.getcwd(),
        }
    )
)
print("loss=0.5")
print("loss=0.25", file=sys.stderr)
