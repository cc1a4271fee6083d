"""One run's outputs: tidy tables (Parquet), a summary, a manifest and figures; and its replay."""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from core.config import ConfigError, canonical_dict, load_scenario  # noqa: E402
from experiments.seed_distribution import format_distribution, seed_distribution  # noqa: E402
from model.attribution import counterfactual_attribution, fire_sale_amplification, price_channel_twin  # noqa: E402
from model.manifest import (  # noqa: E402
    atomic_write_bytes,
    atomic_write_json,
    compare_manifests,
    file_digest,
    manifest_edited,
    parquet_bytes,
    read_manifest,
    read_table,
    run_manifest,
)
from model.metrics import run_summary  # noqa: E402
from model.model import GPUCreditModel  # noqa: E402

TABLES = ("steps", "generations", "defaults")


def tables(model: GPUCreditModel) -> dict[str, pd.DataFrame]:
    metrics = model.metrics
    return {
        "steps": metrics.steps_table(),
        "generations": metrics.generations_table(),
        "defaults": metrics.defaults_table(),
    }


def run_command_summary(model: GPUCreditModel) -> dict[str, Any]:
    """The run's summary with the fire-sale amplification, which runs the price-channel twin (so it is
    here, for the run command and its replay, not in ``run_summary`` that sweeps call per run)."""
    summary = run_summary(model)
    return summary | {
        "fire_sale_amplification": fire_sale_amplification(model, price_channel_twin(model)),
        "seed_distribution": seed_distribution(model, summary),
        "counterfactual_attribution": counterfactual_attribution(model),
    }


def attributed_defaults(defaults: pd.DataFrame, attribution: dict[str, Any]) -> pd.DataFrame:
    """The cause tree with each attributed default's counted effect: the extra defaults it caused and
    the defaults it brought forward (NaN for defaults not attributed)."""
    counted = {d["name"]: d for d in attribution["defaults"]}
    out = defaults.copy()
    for column, key in (("extra_defaults", "extra_defaults"), ("brought_forward", "brought_forward")):
        out[column] = [float(len(counted[n][key])) if n in counted else float("nan") for n in out["name"]]
    return out


def write_run_outputs(
    model: GPUCreditModel,
    out: Path,
    command: list[str],
    figures: bool = True,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write tables, summary (``run_command_summary`` unless given), figures and the manifest into
    ``out`` (each file atomically)."""
    out = Path(out)
    digests: dict[str, str] = {}
    summary = run_command_summary(model) if summary is None else summary
    for name, frame in tables(model).items():
        if name == "defaults" and "counterfactual_attribution" in summary:
            frame = attributed_defaults(frame, summary["counterfactual_attribution"])
        path = out / f"{name}.parquet"
        atomic_write_bytes(path, parquet_bytes(frame))
        digests[path.name] = file_digest(path)
    atomic_write_json(out / "summary.json", summary)
    digests["summary.json"] = file_digest(out / "summary.json")
    manifest = run_manifest(canonical_dict(model.config), model.config.seed, digests, command)
    atomic_write_json(out / "manifest.json", manifest)
    if figures:
        write_figures(model, out / "figures")
    return manifest


def write_figures(model: GPUCreditModel, folder: Path) -> list[Path]:
    """The run at a glance: prices vs fundamentals, defaults, lender capital, fire sales."""
    t = tables(model)
    steps, gens = t["steps"], t["generations"]
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    ax = axes[0, 0]
    for name, g in gens[gens["launched"]].groupby("generation", sort=False):
        line = ax.plot(g["month"], g["secondary_price"] / 1e3, label=f"{name} secondary")[0]
        ax.plot(g["month"], g["fundamental_value"] / 1e3, ls=":", color=line.get_color())
    ax.set(
        title="GPU secondary price (solid) vs fundamental value (dotted)", xlabel="month", ylabel="$k per GPU"
    )
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for kind in ("miner", "neocloud", "bank", "credit_fund", "abs_trust", "bond_investors"):
        if steps[f"defaults_{kind}"].max() > 0:
            ax.step(steps["month"], steps[f"defaults_{kind}"], where="post", label=kind)
    ax.set(title="Cumulative defaults by agent type", xlabel="month", ylabel="agents")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no default in this run", transform=ax.transAxes, ha="center", color="grey")
    ax = axes[1, 0]
    ax.plot(steps["month"], steps["lender_capital_ratio"], label="lender capital ratio")
    ax.plot(steps["month"], steps["book_ltv"], label="book LTV (6-yr straight line)")
    ax.plot(steps["month"], steps["mtm_ltv"], label="LTV at the secondary mark")
    ax.set(title="The LTV illusion and lender capital", xlabel="month", ylabel="ratio")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.bar(steps["month"], steps["forced_sale_units"], label="forced sales (units)")
    ax.plot(steps["month"], steps["unsold_units"], color="black", label="unsold repossessed stock")
    ax2 = ax.twinx()
    ax2.plot(steps["month"], steps["rent_index"], color="tab:red", label="rent index")
    ax2.plot(
        steps["month"],
        steps["btc_price"] / steps["btc_price"].iloc[0],
        color="tab:orange",
        label="BTC (start = 1)",
    )
    ax.set(title="Fire sales, rent and BTC", xlabel="month", ylabel="GPUs")
    ax2.set_ylabel("index")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{model.config.name}, seed {model.config.seed}")
    path = folder / "overview.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return [path]


def format_summary(model: GPUCreditModel, summary: dict[str, Any] | None = None) -> str:
    """The readable summary printed after a run (of ``summary`` if given, else ``run_summary``)."""
    s = run_summary(model) if summary is None else summary
    gens = tables(model)["generations"]
    lines = [
        f"{model.config.name}: seed {model.config.seed}, {s['months']} months from {model.config.world.start}",
        f"defaults: {s['defaults_total']} ({s['share_failed']:.1%} of borrowers and lenders; systemic event (>= 5 %): {'yes' if s['systemic_event'] else 'no'})",
        "  by type:  " + ", ".join(f"{k} {v}" for k, v in s["defaults_by_type"].items() if v)
        if s["defaults_total"]
        else "  none",
    ]
    if s["defaults_total"]:
        lines.append("  by cause: " + ", ".join(f"{k} {v}" for k, v in s["defaults_by_cause"].items() if v))
        lines.append(
            "  by channel: " + ", ".join(f"{k} {v}" for k, v in s["defaults_by_channel"].items() if v)
        )
        lines.append(
            f"first default: {s['first_default']} in month {s['time_to_first_default']}; it caused {s['first_cascade_size']} further default(s)"
        )
        lines.append(
            f"largest cascade: {s['largest_cascade']} default(s) descending from {s['largest_cascade_root']}"
        )
    if "fire_sale_amplification" in s:
        a = s["fire_sale_amplification"]
        ratio = "n/a (no default without it)" if a["ratio"] is None else f"{a['ratio']:.2f}x"
        lines.append(
            f"fire-sale amplification: {ratio} ({a['defaults_price_channel_on']} defaults with the price "
            f"channel, {a['defaults_price_channel_off']} without it, same seed)"
        )
    if s.get("counterfactual_attribution", {}).get("attributed"):
        lines += format_attribution(s["counterfactual_attribution"])
    if "seed_distribution" in s:
        lines += format_distribution(s["seed_distribution"])
    lines.append(
        "lender losses ($M): "
        + ", ".join(f"{k} {v / 1e6:,.1f}" for k, v in s["lender_losses_by_type"].items())
    )
    lines.append("GPU secondary price vs fundamental (lowest ratio in the run; at the end):")
    for name, g in gens[gens["launched"]].groupby("generation", sort=False):
        last = g.iloc[-1]
        worth = g[g["fundamental_value"] > 0]["price_to_fundamental"]  # no ratio for a worthless generation
        trough = f"{worth.min():6.1%}" if len(worth) else "   n/a"
        lines.append(
            f"  {name:6s} trough {trough}  end ${last['secondary_price']:>9,.0f} vs ${last['fundamental_value']:>9,.0f}"
            + ("  (worth nothing: no ratio)" if last["fundamental_value"] <= 0 else "")
        )
    if s["book_ltv_at_default"] is not None:
        recovery = "n/a" if s["realised_recovery"] is None else f"{s['realised_recovery']:.1%}"
        lines.append(
            f"book LTV at default {s['book_ltv_at_default']:.1%} vs realised recovery {recovery} (mean over defaulted borrowers)"
        )
    return "\n".join(lines)


def _first_few(items: list[str], shown: int = 5) -> str:
    """Up to ``shown`` items, then how many more (summary.json has them all)."""
    more = f", {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def format_attribution(attribution: dict[str, Any]) -> list[str]:
    """The summary's lines: each attributed default with a counted effect (same seed, its fire sale and
    clearing losses removed)."""
    a = attribution
    lines = [
        f"counterfactual attribution ({a['attributed']} of {a['borrower_defaults']} borrower defaults, "
        "each re-run on the same seed without its fire sale and clearing losses):"
    ]
    quiet = []
    for d in a["defaults"]:
        extra = _first_few([f"{e['name']} m{e['month']}" for e in d["extra_defaults"]])
        forward = _first_few(
            [f"{e['name']} m{e['month']} not m{e['month_without']}" for e in d["brought_forward"]]
        )
        if not extra and not forward:
            quiet.append(d["name"])
            continue
        lines.append(
            f"  {d['name']} (month {d['month']}): {len(d['extra_defaults'])} extra default(s)"
            + (f" ({extra})" if extra else "")
            + f"; {len(d['brought_forward'])} brought forward"
            + (f" ({forward})" if forward else "")
        )
    if quiet:
        lines.append(f"  no counted effect: {', '.join(quiet)}")
    return lines


def replay_run(manifest_path: Path) -> tuple[bool, list[str]]:
    """Re-run a run from its manifest and compare every output digest (and, where they differ, values)."""
    manifest = read_manifest(manifest_path)
    if manifest["kind"] != "run":
        raise ConfigError(f"manifest {manifest_path}: kind '{manifest['kind']}' is not a single run")
    try:
        scenario = load_scenario(manifest["config"], seed=manifest["seed"])
    except ConfigError as exc:
        raise ConfigError(f"manifest {manifest_path}: field 'config': {exc}") from None
    model = GPUCreditModel(scenario)
    model.run()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_run_outputs(model, Path(tmp), command=["replay", str(manifest_path)], figures=False)
        problems = compare_manifests(manifest, fresh)
        unknown = sorted(set(manifest["outputs"]) - set(fresh["outputs"]))
        missing = sorted(set(fresh["outputs"]) - set(manifest["outputs"]))
        if unknown or missing:
            problems.append(
                f"the manifest's outputs are not a run's: unknown {unknown}, missing {missing} (manifest edited)"
            )
        original_dir = Path(manifest_path).parent
        for name in TABLES:
            recorded, now = original_dir / f"{name}.parquet", Path(tmp) / f"{name}.parquet"
            if (
                recorded.exists()
                and manifest["outputs"].get(recorded.name) != fresh["outputs"][recorded.name]
            ):
                problems.extend(_table_differences(name, recorded, now))
        for name, digest in manifest["outputs"].items():
            on_disk = original_dir / name
            if on_disk.exists() and (not on_disk.is_file() or file_digest(on_disk) != digest):
                problems.append(
                    f"recorded file {on_disk} no longer matches its digest in the manifest (changed after the run)"
                )
                if name.endswith(".parquet") and on_disk.is_file() and (Path(tmp) / name).is_file():
                    problems.extend(
                        _table_differences(name.removesuffix(".parquet"), on_disk, Path(tmp) / name)
                    )
    if edited := manifest_edited(manifest):
        problems.insert(0, edited)
    digest_ok = (
        fresh["digest"] == manifest["digest"]
        and not unknown
        and not edited
        and not any("no longer matches" in p for p in problems)
    )
    return digest_ok, problems


def _table_differences(name: str, recorded: Path, replay: Path) -> list[str]:
    """The value differences of a recorded table file and its replay; a damaged file says so."""
    try:
        return _value_differences(name, read_table(recorded), pd.read_parquet(replay))
    except ConfigError as exc:
        return [str(exc)]


def _value_differences(name: str, recorded: pd.DataFrame, replay: pd.DataFrame) -> list[str]:
    """Cells that differ between a recorded table and its replay (a missing value on both sides, such
    as NaN vs NaN, is no difference)."""
    if recorded.shape != replay.shape or list(recorded.columns) != list(replay.columns):
        return [f"{name}: shape {recorded.shape} vs replay {replay.shape}"]
    out = []
    for column in recorded.columns:
        both_missing = recorded[column].isna() & replay[column].isna()
        differs = (recorded[column].astype(str) != replay[column].astype(str)) & ~both_missing
        if differs.any():
            row = int(differs.idxmax())
            out.append(
                f"{name}.{column}: {int(differs.sum())} value(s) differ, first at row {row}: {recorded[column].iloc[row]!r} vs {replay[column].iloc[row]!r}"
            )
    return out


def main_replay_run(argv: list[str]) -> int:
    """``run.py replay`` of a single run's manifest (``experiments.sweep.main_replay`` sends it here)."""
    parser = argparse.ArgumentParser(
        prog="run.py replay", description="Re-run from a manifest and check its output digest."
    )
    parser.add_argument("manifest", type=Path, help="a manifest.json written by `run.py run`")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)

    ok, problems = replay_run(args.manifest)
    if ok:
        print(f"replay OK: digest {manifest['digest']} reproduced")
        for line in problems:  # e.g. a newer package version that happens to give the same outputs
            print(f"  note: {line}")
        return 0
    print(f"REPLAY MISMATCH for {args.manifest}: the outputs differ from the recorded ones", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    return 1
