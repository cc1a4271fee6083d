"""The outputs of a calibration: posterior, generations, parameter table, fit, figures, manifest.

Everything but ``generations.parquet`` (which records wall times) and the PNGs depends only on the
calibration file, its seed and the code: the same bytes whatever the executor, workers or resumes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model.manifest import atomic_write_bytes, atomic_write_json, parquet_bytes, run_manifest

if TYPE_CHECKING:
    from experiments.calibrate import Resolved

EXTRA_PACKAGES = ("pyabc", "cloudpickle", "dask", "distributed", "sqlalchemy")  # versions in the manifest
IDENTIFIED_MAX_WIDTH = 0.8  # a posterior 90 % interval wider than 80 % of the prior's: not identified
POSTERIOR = "posterior.parquet"
GENERATIONS = "generations.parquet"
PARAMETERS = "parameters.csv"
FIT = "fit.csv"
MANIFEST = "manifest.json"


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode()


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of importance weights, (sum w)^2 / sum w^2: the number of equally
    weighted particles worth as much; near 1 the population has collapsed onto one particle."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / np.sum(w * w))


def generations_table(history: Any) -> pd.DataFrame:
    pops = history.get_all_populations()
    pops = pops[pops.t >= 0].reset_index(drop=True)
    ess = [effective_sample_size(history.get_distribution(0, int(t))[1]) for t in pops.t]
    return pd.DataFrame(
        {
            "generation": pops.t.astype("int64"),
            "epsilon": pops.epsilon.astype(float),
            "accepted": pops.particles.astype("int64"),
            "simulations": pops.samples.astype("int64"),
            "acceptance_rate": (pops.particles / pops.samples).astype(float),
            "effective_sample_size": np.array(ess, float),
            "wall_seconds": pops.wall_time.astype(float),
        }
    )


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    w = w / w.sum()
    return float(np.interp(q, np.cumsum(w) - w / 2, v))


def parameter_table(resolved: Resolved, posterior: pd.DataFrame) -> pd.DataFrame:
    w = posterior["weight"].to_numpy()
    rows = []
    for spec in resolved.calibration.parameters:
        x = posterior[spec.path].to_numpy()
        lo, hi = spec.interval()
        q05, q50, q95 = (weighted_quantile(x, w, q) for q in (0.05, 0.5, 0.95))
        ratio = (q95 - q05) / (hi - lo) if hi > lo else float("nan")
        rows.append(
            {
                "parameter": spec.path,
                "prior": spec.prior,
                "prior_q05": lo,
                "prior_q95": hi,
                "posterior_median": q50,
                "posterior_q05": q05,
                "posterior_q95": q95,
                "width_vs_prior": ratio,
                "identified": bool(ratio <= IDENTIFIED_MAX_WIDTH),
            }
        )
    return pd.DataFrame(rows)


def fit_table(resolved: Resolved, predictive: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for target in resolved.calibration.targets:
        values = predictive[target.name].to_numpy(dtype=float) if len(predictive) else np.array([])
        finite = values[np.isfinite(values)]
        q = np.quantile(finite, [0.05, 0.5, 0.95]) if finite.size else [np.nan] * 3
        rows.append(
            {
                "target": target.name,
                "role": target.role,
                "statistic": target.statistic,
                "observed": float(target.observed),
                "sd": float(target.sd),
                "source": target.source,
                "model_median": float(q[1]),
                "model_q05": float(q[0]),
                "model_q95": float(q[2]),
                "draws": int(finite.size),
                "observed_in_band": bool(q[0] <= target.observed <= q[2]) if finite.size else False,
            }
        )
    return pd.DataFrame(rows)


def _figures(resolved: Resolved, posterior: pd.DataFrame, fit: pd.DataFrame, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    specs = resolved.calibration.parameters
    fig, axes = plt.subplots(1, len(specs), figsize=(4 * len(specs), 3.2), squeeze=False)
    for ax, spec in zip(axes[0], specs, strict=True):
        dist = spec.rv().distribution
        lo, hi = dist.ppf(0.001), dist.ppf(0.999)
        grid = np.linspace(lo, hi, 200)
        ax.hist(
            posterior[spec.path],
            bins=30,
            weights=posterior["weight"],
            density=True,
            alpha=0.6,
            label="posterior",
        )
        ax.plot(grid, dist.pdf(grid), color="k", lw=1, label="prior")
        ax.set_title(spec.path, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [folder / "posterior.png"]
    fig.savefig(paths[0], dpi=110, metadata={"Software": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(fit)), 3.2))
    xs = np.arange(len(fit))
    z = lambda col: (fit[col] - fit["observed"]) / fit["sd"]  # noqa: E731 - in units of each target's sd
    ax.errorbar(
        xs,
        z("model_median"),
        yerr=[z("model_median") - z("model_q05"), z("model_q95") - z("model_median")],
        fmt="o",
        label="model: median and 90 % band",
    )
    ax.axhline(0, color="k", lw=1, label="observed")
    ax.axhspan(-1, 1, color="grey", alpha=0.15, label="observed +- sd")
    ax.set_xticks(xs, fit["target"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("(model - observed) / sd")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(folder / "fit.png")
    fig.savefig(paths[1], dpi=110, metadata={"Software": None})
    plt.close(fig)
    return paths


def write_outputs(
    resolved: Resolved,
    out: Path,
    history: Any,
    posterior: pd.DataFrame,
    predictive: pd.DataFrame,
    command: list[str],
    figures: bool = True,
    code_revision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from importlib import metadata

    out = Path(out)
    fit = fit_table(resolved, predictive)
    tables = {
        POSTERIOR: parquet_bytes(posterior),
        GENERATIONS: parquet_bytes(generations_table(history)),
        PARAMETERS: _csv_bytes(parameter_table(resolved, posterior)),
        "parameters.parquet": parquet_bytes(parameter_table(resolved, posterior)),
        FIT: _csv_bytes(fit),
        "fit.parquet": parquet_bytes(fit),
        "predictive.parquet": parquet_bytes(predictive),
    }
    outputs = {}
    for name, data in tables.items():
        atomic_write_bytes(out / name, data)
        outputs[name] = hashlib.sha256(data).hexdigest()
    if figures:
        for path in _figures(resolved, posterior, fit, out / "figures"):
            outputs[f"figures/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    cal = resolved.calibration
    manifest = run_manifest(cal.model_dump(mode="json"), cal.seed, outputs, command)
    if code_revision is not None:  # the revision when the calibration started
        manifest["code_revision"] = code_revision
    for name in EXTRA_PACKAGES:
        try:
            manifest["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            manifest["versions"][name] = "not installed"
    manifest.update(
        kind="calibration",
        name=cal.name,
        calibration_file=resolved.source,
        calibration_text=resolved.text,
        scenario=resolved.scenario,
        deterministic_outputs=[
            POSTERIOR,
            PARAMETERS,
            "parameters.parquet",
            FIT,
            "fit.parquet",
            "predictive.parquet",
        ],
    )
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def format_parameters(out: Path) -> str:
    table = pd.read_csv(Path(out) / PARAMETERS)
    lines = [
        "parameter                              posterior median [90 % interval]   prior 90 %        identified"
    ]
    for row in table.itertuples():
        lines.append(
            f"{row.parameter:38s} {row.posterior_median:10.4g} [{row.posterior_q05:.4g}, {row.posterior_q95:.4g}]"
            f"   [{row.prior_q05:.4g}, {row.prior_q95:.4g}]   {'yes' if row.identified else 'NO (posterior ~ prior)'}"
        )
    return "\n".join(lines)
