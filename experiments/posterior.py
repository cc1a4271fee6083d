"""A calibration's posterior sample as parameter sets for other runs (experiments, scripts).

``python run.py calibrate`` writes ``posterior.parquet``: one row per particle of the final ABC-SMC
generation, its parameters (dotted scenario paths), weight and distance. Runs "over the posterior" take
draws by weight from one seed, so they replay exactly; the file's digest is recorded with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.config import ConfigError

META_COLUMNS = ("generation", "particle", "weight", "distance")


def read_posterior(path: str | Path, field: str = "posterior.file") -> Any:
    """The posterior sample as a DataFrame, checked: a weight column of finite non-negative numbers
    with a positive sum and at least one finite numeric parameter column. ``field`` names the setting
    that pointed here, for the error message."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{field}: {path}: no such file (a calibration's posterior.parquet)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or non-Parquet file
        raise ConfigError(f"{field}: {path}: not a readable Parquet file ({type(exc).__name__})") from None
    params = [c for c in frame.columns if c not in META_COLUMNS]
    if "weight" not in frame.columns or not params or len(frame) == 0:
        raise ConfigError(
            f"{field}: {path}: not a posterior sample (needs rows, a 'weight' column and parameter columns "
            f"named by dotted scenario paths; has {list(frame.columns)})"
        )
    for column in ["weight", *params]:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        if not np.isfinite(values).all():
            raise ConfigError(
                f"{field}: {path}: column '{column}' has missing, non-numeric or infinite values"
            )
    weights = frame["weight"].to_numpy(float)
    if (weights < 0).any() or not weights.sum() > 0:
        raise ConfigError(f"{field}: {path}: weights must be non-negative with a positive sum")
    return frame


def parameter_columns(frame: Any) -> list[str]:
    return [c for c in frame.columns if c not in META_COLUMNS]


def draw_rows(weights: np.ndarray, count: int, seed: np.random.SeedSequence) -> np.ndarray:
    """``count`` row indices drawn with replacement in proportion to ``weights``."""
    w = np.asarray(weights, float)
    return np.random.default_rng(seed).choice(len(w), size=count, p=w / w.sum())


def draw_parameters(
    frame: Any, count: int, seed: np.random.SeedSequence, exclude: list[str] | tuple[str, ...] = ()
) -> list[dict[str, float]]:
    """``count`` parameter sets (dotted path -> value) drawn by weight; ``exclude`` columns are left out."""
    keep = [c for c in parameter_columns(frame) if c not in exclude]
    rows = draw_rows(frame["weight"].to_numpy(float), count, seed)
    values = frame[keep].to_numpy(float)
    return [{path: float(values[k, j]) for j, path in enumerate(keep)} for k in rows]
