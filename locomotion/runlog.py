"""Run-directory logging: metrics.jsonl (one JSON object per logged iteration) + TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLogger:
    """Appends metrics to `metrics.jsonl` and TensorBoard event files in a run directory."""

    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter

        self.jsonl = open(run_dir / "metrics.jsonl", "a")
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"env_steps": step, **{k: float(v) for k, v in metrics.items()}}
        self.jsonl.write(
            json.dumps(
                {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in row.items()
                }
            )
            + "\n"
        )
        self.jsonl.flush()
        for k, v in metrics.items():
            self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        self.jsonl.close()
        self.writer.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
