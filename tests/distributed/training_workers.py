"""What each spawned rank runs in the multi-process training tests (importable by name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphereface2.config import config_from_dict
from sphereface2.train.trainer import train


def train_rank(
    ctx: Any, raw_config: dict, out_dir: str, resume: str | None, stop_after: int | None
) -> dict[str, Any]:
    """One rank of ``train``; the process group already exists (the trainer reuses it)."""
    cfg = config_from_dict(raw_config, "multi-process test config")
    result = train(cfg, Path(out_dir), resume=resume, stop_after=stop_after, echo=False)
    return {"rank": ctx.rank, "iteration": result.iteration, "status": result.status}
