"""A training script that knows nothing of tuner: hyperparameters in, metric lines out.

It takes its hyperparameters as ``--name value`` arguments (the SageMaker convention) and
prints ``epoch=N val_loss=X`` lines, which the spec's ``metric_definitions`` read. The same
script runs unchanged as a command trial on Ray and as a SageMaker training job.
"""

from __future__ import annotations

import argparse
import math
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=0.05)
    args = parser.parse_args()

    # A made-up loss surface: best near lr=1e-2, width=64, and adam a little better than sgd.
    best_lr = math.log10(1e-2)
    floor = (math.log10(args.lr) - best_lr) ** 2 + ((args.width - 64) / 64) ** 2
    floor += 0.0 if args.optimizer == "adam" else 0.1
    for epoch in range(args.epochs):
        time.sleep(args.epoch_seconds)
        val_loss = floor + 1.0 / (epoch + 1)
        print(f"epoch={epoch} val_loss={val_loss:.6f}", flush=True)


if __name__ == "__main__":
    main()
