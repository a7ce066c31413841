"""Run-directory logging: metrics.jsonl (one JSON object per logged iteration) + TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLogger:
    """Appends metrics to `metrics.jsonl` and TensorBoard event files in a run directory.

    `resume_step`: the run resumes from a checkpoint at this many env steps; rows the killed
    run logged after it (it ran past its last checkpoint) are cut from metrics.jsonl, and
    TensorBoard is told to purge its events past that step, so no iteration appears twice."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        path = run_dir / "metrics.jsonl"
        purge = None
        if resume_step is not None:
            purge = resume_step + 1
            if path.is_file():
                lines = path.read_text().splitlines()
                kept = [line for line in lines if _step(line) is not None]
                kept = [line for line in kept if _step(line) <= resume_step]
                if len(kept) < len(lines):
                    path.write_text("".join(line + "\n" for line in kept))
        self.jsonl = open(path, "a")
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

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


def _step(line: str) -> int | None:
    """A metrics row's env_steps; None for a blank line or the torn last line of a run killed
    while writing it."""
    try:
        return json.loads(line).get("env_steps", 0) if line.strip() else None
    except json.JSONDecodeError:
        return None


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
