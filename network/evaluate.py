"""Train-and-test in one call: what ``kmlp train`` and a retrain report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kmlp.network.config import TrainConfig
from kmlp.network.data import Dataset
from kmlp.network.threads import DEFAULT_BLAS_THREADS, blas_limit
from kmlp.network.training import Callback, TrainResult, train


@dataclass(frozen=True)
class TestedRun:
    """A training run and its test-set scores (accuracy as a fraction, loss in nats)."""

    result: TrainResult
    test_accuracy: float
    test_loss: float

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures of the run."""
        r = self.result
        return {
            "val_accuracy": r.val_accuracy,
            "train_accuracy": r.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "seconds": r.seconds,
            "seconds_per_epoch": r.seconds_per_epoch,
            "epochs": r.epochs,
            "steps": r.steps,
            "stopped": r.stopped,
            "blas_threads": r.blas_threads,
            "config": r.config.to_dict(),
        }


def train_and_test(
    *,
    data: Dataset,
    config: TrainConfig,
    callback: Callback | None = None,
    progress: bool = False,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
) -> TestedRun:
    """Train on ``data.train`` (validating on ``data.val``), then score ``data.test``."""
    result = train(
        data=data, config=config, callback=callback, progress=progress, blas_threads=blas_threads
    )
    with blas_limit(blas_threads):
        loss, _, acc = result.net.evaluate(data.test.X, data.test.y, config.lam)
    return TestedRun(result=result, test_accuracy=acc, test_loss=loss)
