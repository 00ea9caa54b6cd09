"""What a run shows and leaves behind while it trains: progress bar, JSON lines, TensorBoard, curves.png.

Only rank 0 of a ``torchrun`` job monitors; the other ranks hold a :class:`Monitor` that does nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class Monitor:
    """The run's outputs for people: ``log.jsonl`` (one JSON record per line), TensorBoard scalars when
    the optional ``tensorboard`` is installed, a tqdm bar when ``progress`` is on, and ``curves.png``."""

    def __init__(self, run_dir: Path, name: str, total_steps: int, first_step: int, active: bool,
                 progress: bool) -> None:
        self.run_dir = run_dir
        self.bar = _progress_bar(name, total_steps, first_step) if active and progress else None
        self.writer = _tensorboard(run_dir) if active else None
        self.log_file = (run_dir / "log.jsonl").open("a", encoding="utf-8") if active else None

    def record(self, record: dict[str, Any]) -> None:
        """Append one record (``step`` plus scalars) to every active output."""
        step = int(record["step"])
        if self.bar is not None and "loss" in record:
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}", refresh=False)
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch", "time"):
                    self.writer.add_scalar(key, value, step)
        if self.log_file is not None:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

    def advance(self) -> None:
        """One training step done."""
        if self.bar is not None:
            self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def _progress_bar(name: str, total: int, initial: int) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, initial=initial, desc=name, unit="it", dynamic_ncols=True, file=sys.stderr)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the optional ``train`` extra
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Training loss and validation PSNR against step, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; skipping curves.png (pip install 'restorekit[train]')", file=sys.stderr)
        return
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    psnrs = [(h["step"], h["val_psnr"]) for h in history if "val_psnr" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        axes[0].plot(*zip(*losses))
    axes[0].set(title="training loss", xlabel="step")
    if psnrs:
        axes[1].plot(*zip(*psnrs), marker="o")
    axes[1].set(title="validation PSNR (dB)", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
