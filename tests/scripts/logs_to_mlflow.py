"""A training script that logs to MLflow the way scripts do, knowing nothing of tuner."""

import argparse

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("-x", type=float)
x = parser.parse_args().x
with mlflow.start_run():
    mlflow.log_param("script", "logs_to_mlflow")
    mlflow.log_metric("inner", x)
print(f"loss={x * x}")
