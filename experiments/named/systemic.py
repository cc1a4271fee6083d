"""Experiment 10: which single default hurts most (issue 18, part 2).

Every borrower and every lender of a scenario (default ``market_2026``, the public market from filings)
is forced into default alone in month 1, over the calibrated stochastic world (posterior draws), with the
price channel (covenants at the secondary mark) on and off; ``systemic_ranking_reference.toml`` runs
the same seeds and draws with no forced default. Each forced run is paired with the reference run of its replicate and channel setting
(common random numbers), so the effect of one default is a per-replicate difference:

- further defaults: defaults in the forced run, less the forced one, less defaults in the reference run
  (an agent that the reference run sees default anyway within the horizon is counted there, so this
  undercounts by one in such runs);
- lender losses (USD): all lenders' losses, forced run less reference;
- secondary price trough by generation: the extra peak-to-trough fall of the generation's secondary
  price (percentage points; negative = deeper).

Each is ranked by its mean (95 % normal interval over replicates) and its 99 % quantile across replicates
(95 % bootstrap interval; with few replicates it is close to the worst run). Beside them, network-only
measures on the scenario at its start, with no world moving: DebtRank (Battiston et al. 2012, over the
ledger's loans and balance-sheet equity at the marks; ``experiments.validation.debtrank``) and the
engine's own cascade and lender clearing in the month of the default with the price channel off (the
deterministic network answer) and on (the same month with the fire sale marking collateral).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import ConfigError, load_scenario
from experiments.display_names import display_names
from experiments.figures import _plt, save_figure
from experiments.named.common import lender_loss, num, ok_runs, write_csv
from experiments.paired import Z95

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult
    from model.model import GPUCreditModel

# What the public data leaves unknown, and how it bears on the ranking (data/market_2026/README.md has
# the row-by-row gaps); printed under the ranking of that scenario.
UNKNOWNS = {
    "market_2026": """**What the public data leaves unknown.** Read the ranking as the ranking of this scenario,
not of the market. (1) *Lenders' balance sheets are not public.* Each lender group here holds only the
loans of the table, with the baseline's capital ratio for its type as equity (banks 12 %, credit funds
35 %, bond investors 50 % of that book), so a group that lends to one borrower fails whenever that
borrower's loss exceeds the cushion: the "further defaults" are almost all such groups, and they mean
that the holders of that claim lose more than an assumed cushion, not that Blackstone, MUFG or a bond
fund fails. (2) *Who lends to whom beyond these loans is unknown*: no lender-to-lender exposure and no
lender shared between borrowers is in the table, so the network-only channel stops at the first lenders
by construction, and DebtRank counts only the first lenders' losses. (3) *Commitments whose drawn amount is not reported are modelled
fully drawn* (CoreWeave's DDTL 4.0 and 5.0 and the DDTL 2.0 amendment, $14.6B; Lambda's $1B facility):
CoreWeave's losses are an upper bound on that count. (4) *Fleets by generation are estimated from power*
(CoreWeave's split between H100 and GB200, Nebius, the IREN and Fluidstack builds) and Lambda's fleet is
implied by its debt, so the size and mix of the fire sale after a default are estimates; so are the
recoveries, which rest on the baseline's generic buyers of used GPUs rather than on an observed depth of
that market. (5) *Cash is stale or missing* (zero for Lambda, IREN, Core Scientific and Fluidstack), which
makes their estates and thus their lenders' recoveries pessimistic. (6) *Guarantees are partly modelled*:
Google's $3.2B backstop of Fluidstack's lease pays TeraWulf Fluidstack's hosting fee after a Fluidstack
default (it does not cover TeraWulf's own debt); Meta's residual value guarantee of Hyperion is not, its
amount not being public, so a Beignet default costs its noteholders more than the structure would. (7)
*Lease SPVs are income without assets*: Beignet's rent (not public) is estimated as its notes' debt
service, and neither it nor the Compass ABS owns anything the model can sell, so their noteholders
recover nothing; hosts earn the model's colocation fee, not their lease rent. (8) *Borrowers left out*
(Cipher, Hut 8, Crusoe's Abilene project, data-centre ABS and CMBS whose terms were not found) are not
ranked, and the lenders they share with the modelled borrowers are not linked. (9) The world is the 2023-2025 calibration's posterior; several of its parameters (the
new-GPU price decline, the rent shock size) are weakly identified, which the replicates carry into the
intervals.""",
}
TARGETS_PLACEHOLDER = '["BORROWERS_AND_LENDERS"]'
TARGET = "shocks.0.agent"
CHANNEL = "cascade.price_channel"
TAIL = 0.99
BOOTSTRAP_SEED = 610


# --- the design ---------------------------------------------------------------------------------


def targets(scenario: str | dict[str, Any]) -> pd.DataFrame:
    """The scenario's borrowers and lenders (id, display name, type), in ledger order."""
    from core.ledger import BORROWER_KINDS, KIND_NAMES, LENDER_KINDS, Kind
    from model.model import GPUCreditModel

    model = GPUCreditModel(scenario, months=1)
    rows = np.flatnonzero(model.ledger.of_kind(*BORROWER_KINDS, *LENDER_KINDS))
    ids = [model.names[i] for i in rows]
    return pd.DataFrame(
        {
            "agent": ids,
            "name": display_names(model.config.name, ids),
            "type": [KIND_NAMES[Kind(model.ledger.kind[i])] for i in rows],
            "role": ["borrower" if Kind(model.ledger.kind[i]) in BORROWER_KINDS else "lender" for i in rows],
        }
    )


def fill_design(
    text: str, scenario: str | None, patch: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """An experiment file of this experiment completed for a scenario: ``scenario`` (when given) on its
    scenario line, and the scenario's borrower and lender ids in place of the targets placeholder; the
    patch's forced default names the first of them (each design point then names its own)."""
    patch = copy.deepcopy(patch or {})
    if scenario is not None:
        path = Path(scenario)
        value = str(path.resolve()) if path.suffix == ".toml" and path.is_file() else scenario
        load_scenario(value)  # an unknown name or a bad file stops here, with the loader's message
        text, n = re.subn(r'(?m)^scenario = ".*"$', f"scenario = {_toml_string(value)}", text, count=1)
        if n != 1:
            raise ConfigError("experiment file: no top-level 'scenario = \"...\"' line to replace")
    if TARGETS_PLACEHOLDER in text:
        name = re.search(r'(?m)^scenario = "(.*)"$', text)
        found = targets(name.group(1) if name else "baseline")
        if found.empty:
            raise ConfigError(f"--scenario {scenario}: has no borrower or lender to default")
        text = text.replace(TARGETS_PLACEHOLDER, "[" + ", ".join(map(_toml_string, found["agent"])) + "]")
        for shock in patch.get("shocks", []):
            if shock.get("kind") == "default_agent":
                shock["agent"] = str(found["agent"].iloc[0])
    return text, patch


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- network-only measures ------------------------------------------------------------------------


def engine_cascade(scenario: str | dict[str, Any], agent: str, price_channel: bool) -> GPUCreditModel:
    """The scenario at its start with ``agent`` forced into default now: the engine's cascade and lender
    clearing within that month, nothing else moving (no posterior, no world step)."""
    from model.model import GPUCreditModel

    model = GPUCreditModel(scenario, overrides={CHANNEL: price_channel})
    model.default_agent(model.names.index(agent))
    return model


def debtrank_at_start(model: GPUCreditModel, agents: list[str]) -> np.ndarray:
    """DebtRank (Battiston et al. 2012) of each of ``agents`` among them: the share of the others'
    equity its default alone destroys, over the ledger's loans and balance-sheet equity at the marks
    (``experiments.validation.debtrank``). An agent without positive book equity (a miner's rigs and a
    contract's value are not on that balance sheet) enters with 1 USD: any loss wipes it out and it
    weighs nothing in the system's equity."""
    from core.clearing import systemic_importance
    from experiments.validation.debtrank import balance_sheet_equity, exposures

    rows = np.array([model.names.index(a) for a in agents])
    local = np.full(model.ledger.n_agents, -1)
    local[rows] = np.arange(rows.size)
    debtor, creditor, amount = exposures(model)
    keep = (local[debtor] >= 0) & (local[creditor] >= 0)
    equity = np.maximum(balance_sheet_equity(model)[rows], 1.0)
    return systemic_importance(rows.size, local[debtor[keep]], local[creditor[keep]], amount[keep], equity)


def network_measures(scenario: str | dict[str, Any], agents: list[str]) -> pd.DataFrame:
    """Per agent: DebtRank at the start, and further defaults and lender losses (USD) of the engine's
    cascade in the month of the default, with the price channel off and on."""
    from model.metrics import lender_losses
    from model.model import GPUCreditModel

    rank = debtrank_at_start(GPUCreditModel(scenario), agents)
    rows = []
    for k, agent in enumerate(agents):
        row: dict[str, Any] = {"agent": agent, "debtrank": float(rank[k])}
        for on in (False, True):
            model = engine_cascade(scenario, agent, on)
            tag = "on" if on else "off"
            row[f"engine_further_defaults_{tag}"] = int(model.ledger.defaulted.sum()) - 1
            row[f"engine_lender_loss_{tag}"] = float(lender_losses(model).sum())
        rows.append(row)
    return pd.DataFrame(rows)


# --- the paired effects ---------------------------------------------------------------------------


def generations_in(runs: pd.DataFrame) -> list[str]:
    """Generations whose peak-to-trough price fall the runs recorded (the column is empty before launch)."""
    prefix = "price_peak_to_trough_"
    return [c.removeprefix(prefix) for c in runs if c.startswith(prefix) and num(runs[c]).notna().any()]


def paired_effects(forced: pd.DataFrame, reference: pd.DataFrame, borrowers: set[str]) -> pd.DataFrame:
    """One row per forced run: its effect against the reference run of the same replicate and channel
    (further defaults of any agent and of borrowers, lender losses, price troughs)."""
    gens = generations_in(reference)
    keys = ["replicate", CHANNEL]

    def measures(runs: pd.DataFrame) -> pd.DataFrame:
        out = runs[keys].copy()
        out["defaults"] = num(runs["defaults_total"])
        out["borrower_defaults"] = num(runs["defaults_by_type_miner"]) + num(
            runs["defaults_by_type_neocloud"]
        )
        out["lender_loss"] = lender_loss(runs)
        for g in gens:
            out[f"trough_{g}"] = num(runs[f"price_peak_to_trough_{g}"])
        return out

    ref = measures(ok_runs(reference)).set_index(keys)
    runs = ok_runs(forced)
    mine = measures(runs)
    mine["agent"] = runs[TARGET].to_numpy()
    base = ref.loc[list(zip(mine["replicate"], mine[CHANNEL], strict=True))].to_numpy()
    cols = [c for c in ref.columns]
    diff = mine[cols].to_numpy(float) - base
    out = pd.DataFrame(diff, columns=cols, index=mine.index)
    out["defaults"] -= 1.0  # the forced default itself
    out["borrower_defaults"] -= mine["agent"].isin(borrowers).to_numpy(float)
    out = out.rename(
        columns={"defaults": "further_defaults", "borrower_defaults": "further_borrower_defaults"}
    )
    out["agent"], out["replicate"], out["price_channel"] = mine["agent"], mine["replicate"], mine[CHANNEL]
    return out.reset_index(drop=True)


def _tail(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """The 99 % quantile and a 95 % bootstrap interval of it."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    boot = np.quantile(rng.choice(values, size=(400, values.size)), TAIL, axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(np.quantile(values, TAIL)), float(low), float(high)


def ranking_table(effects: pd.DataFrame) -> pd.DataFrame:
    """Mean (95 % CI) and 99 % quantile (bootstrap 95 % CI) of every effect, per agent and channel."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    measures = [c for c in effects if c not in ("agent", "replicate", "price_channel")]
    rows = []
    for (agent, channel), group in effects.groupby(["agent", "price_channel"], sort=False):
        row: dict[str, Any] = {"agent": agent, "price_channel": bool(channel), "n": len(group)}
        for m in measures:
            y = group[m].dropna().to_numpy(float)
            mean = float(y.mean()) if y.size else math.nan
            half = Z95 * float(y.std(ddof=1)) / math.sqrt(y.size) if y.size > 1 else 0.0
            row.update({m: mean, f"{m}_low": mean - half, f"{m}_high": mean + half})
            row[f"{m}_p99"], row[f"{m}_p99_low"], row[f"{m}_p99_high"] = _tail(y, rng)
        rows.append(row)
    return pd.DataFrame(rows)


def wide_table(ranking: pd.DataFrame, network: pd.DataFrame, who: pd.DataFrame) -> pd.DataFrame:
    """One row per agent: the full model (channel on), without the fire-sale channel (suffix ``_off``),
    the network-only measures and the agent's name and type; sorted by expected lender loss."""
    on = ranking[ranking["price_channel"]].drop(columns="price_channel").set_index("agent")
    off = (
        ranking[~ranking["price_channel"]].drop(columns="price_channel").set_index("agent").add_suffix("_off")
    )
    table = who.set_index("agent").join(on).join(off).join(network.set_index("agent"))
    return table.sort_values(["lender_loss", "further_defaults"], ascending=False).reset_index()


# --- figures --------------------------------------------------------------------------------------


def ranking_figure(table: pd.DataFrame, gens: list[str], path: Path, replicates: int) -> Path:
    """Three panels, one row per agent: further defaults and lender losses (USD bn), each mean with its
    95 % CI (price channel on and off) and the 99 % quantile; the extra price fall per generation."""
    plt = _plt()
    n = len(table)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.32 * n + 1.8), sharey=True)
    y = np.arange(n)[::-1]
    panels = [
        ("further_defaults", 1.0, "further defaults"),
        ("lender_loss", 1e9, "lender losses (USD bn)"),
    ]
    for ax, (m, scale, label) in zip(axes[:2], panels, strict=True):
        for suffix, colour, dy, name in (
            ("", "tab:red", 0.15, "price channel on"),
            ("_off", "tab:blue", -0.15, "off"),
        ):
            mean = table[f"{m}{suffix}"] / scale
            err = [mean - table[f"{m}_low{suffix}"] / scale, table[f"{m}_high{suffix}"] / scale - mean]
            ax.errorbar(mean, y + dy, xerr=err, fmt="o", ms=4, color=colour, capsize=2, label=f"mean, {name}")
        ax.scatter(
            table[f"{m}_p99"] / scale, y + 0.15, marker="|", s=120, color="black", label="99 % quantile (on)"
        )
        ax.axvline(0, color="#999999", lw=0.6)
        ax.set_xlabel(label)
    ax = axes[2]
    for g, colour in zip(gens, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
        mean = 100 * table[f"trough_{g}"]
        err = [mean - 100 * table[f"trough_{g}_low"], 100 * table[f"trough_{g}_high"] - mean]
        ax.errorbar(mean, y, xerr=err, fmt="o", ms=3, color=colour, capsize=2, label=g, alpha=0.8)
    ax.axvline(0, color="#999999", lw=0.6)
    ax.set_xlabel("extra peak-to-trough fall of the\nsecondary price (pp, channel on)")
    axes[0].set_yticks(y, [f"{r['name']} ({r['type']})" for _, r in table.iterrows()], fontsize=8)
    axes[0].legend(fontsize=7, frameon=False, loc="lower right")
    ax.legend(fontsize=7, frameon=False, loc="lower left")
    fig.suptitle(
        f"Experiment 10: one forced default at the start, paired with no default ({replicates} replicates, "
        "95 % CIs)",
        fontsize=10,
    )
    return save_figure(fig, path)


def impact_layout(model: GPUCreditModel, agents: list[str]) -> dict[str, tuple[float, float]]:
    """Borrowers on a circle (a host next to its tenant), each borrower's lenders fanned out beyond it;
    deterministic."""
    led = model.ledger
    index = {a: model.names.index(a) for a in agents}
    partners: dict[str, list[str]] = {}
    for host, tenants in _hosting(model).items():
        for tenant in tenants:
            partners.setdefault(host, []).append(tenant)
            partners.setdefault(tenant, []).append(host)
    borrowers = [a for a in agents if not _is_lender(model, index[a])]
    ordered: list[str] = []
    for b in borrowers:
        ordered += [x for x in (b, *partners.get(b, [])) if x in borrowers and x not in ordered]
    pos: dict[str, tuple[float, float]] = {}
    step = 2 * math.pi / max(len(ordered), 1)
    for k, b in enumerate(ordered):
        angle = k * step
        pos[b] = (math.cos(angle), math.sin(angle))
        lenders = sorted({model.names[int(c)] for c in led.loans.creditor[led.loans.debtor == index[b]]})
        lenders = [x for x in lenders if x in index and x not in pos]
        for j, lender in enumerate(lenders):
            a = angle + 0.8 * step * ((j + 0.5) / len(lenders) - 0.5)
            radius = 2.0 + 0.35 * (j % 2)
            pos[lender] = (radius * math.cos(a), radius * math.sin(a))
    for k, a in enumerate(x for x in agents if x not in pos):  # lenders of no borrower here
        pos[a] = (-3.0 + 0.4 * k, -3.0)
    return pos


def _is_lender(model: GPUCreditModel, index: int) -> bool:
    from core.ledger import LENDER_KINDS, Kind

    return Kind(model.ledger.kind[index]) in LENDER_KINDS


def _hosting(model: GPUCreditModel) -> dict[str, list[str]]:
    """host -> tenants (borrowers) by name."""
    ties: dict[str, list[str]] = {}
    for u, v, d in model.graph.edges(data=True):
        if d.get("tie") == "hosting":
            ties.setdefault(model.names[int(u)], []).append(model.names[int(v)])
    return ties


def network_figure(scenario: str | dict[str, Any], table: pd.DataFrame, path: Path) -> Path:
    """The scenario's lending network (loans and hosting ties), node area by the expected lender loss
    its default alone causes in the full model, colour by role, edge width by principal, real names."""
    from model.model import GPUCreditModel

    model = GPUCreditModel(scenario)
    agents = list(table["agent"])
    pos = impact_layout(model, agents)
    loans = model.ledger.loans
    weights: dict[tuple[str, str], float] = {}
    for c, d, p in zip(loans.creditor, loans.debtor, loans.principal, strict=True):
        u, v = model.names[int(c)], model.names[int(d)]
        if u in pos and v in pos:
            weights[(u, v)] = weights.get((u, v), 0.0) + float(p)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 9))
    top = max(weights.values(), default=1.0)
    for (u, v), w in weights.items():
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.plot([x0, x1], [y0, y1], lw=0.5 + 6 * math.sqrt(w / top), color="#8899aa", alpha=0.7, zorder=1)
    for host, tenants in _hosting(model).items():
        for tenant in tenants:
            if host in pos and tenant in pos:
                (x0, y0), (x1, y1) = pos[host], pos[tenant]
                ax.plot([x0, x1], [y0, y1], lw=1.2, color="#666666", ls=":", zorder=1)
    impact = table.set_index("agent")["lender_loss"].clip(lower=0).fillna(0.0)
    scale = max(float(impact.max()), 1.0)
    for role, colour in (("borrower", "tab:orange"), ("lender", "tab:blue")):
        rows = table[table["role"] == role]
        xy = np.array([pos[a] for a in rows["agent"]])
        if xy.size:
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=30 + 4000 * impact[rows["agent"]].to_numpy() / scale,
                c=colour,
                alpha=0.75,
                edgecolors="white",
                zorder=2,
                label=f"{role}s",
            )
    for _, r in table.iterrows():
        x, y = pos[r["agent"]]
        outward = 1.0 if x >= 0 else -1.0
        ax.annotate(
            r["name"] + (f"\n${r['lender_loss'] / 1e9:.1f}B" if r["lender_loss"] >= 0.05e9 else ""),
            (x, y),
            xytext=(6 * outward, 4),
            textcoords="offset points",
            fontsize=7,
            ha="left" if outward > 0 else "right",
            va="bottom",
        )
    ax.set_xlim(-3.6, 3.6)
    ax.set_ylim(-3.3, 3.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.legend(frameon=False, fontsize=8, loc="lower left", markerscale=0.3)
    ax.set_title(
        "Node area and label: expected lender losses its default alone causes (full model, channel on);\n"
        "edge width: loan principal; dotted: hosting (host next to its tenant)",
        fontsize=9,
    )
    return save_figure(fig, path)


# --- the analysis ---------------------------------------------------------------------------------


def _usd(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{round(x / 1e9, 2) + 0.0:.2f}"  # never "-0.00"


def _ci(r: pd.Series, m: str, shown: Any, suffix: str = "") -> str:
    return f"{shown(r[f'{m}{suffix}'])} [{shown(r[f'{m}_low{suffix}'])}, {shown(r[f'{m}_high{suffix}'])}]"


def systemic_ranking(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    forced, reference = sweeps
    scenario = forced.scenario
    who = targets(scenario)
    effects = paired_effects(forced.runs, reference.runs, set(who.loc[who["role"] == "borrower", "agent"]))
    gens = generations_in(reference.runs)
    network = network_measures(scenario, list(who["agent"]))
    table = wide_table(ranking_table(effects), network, who)
    replicates = forced.experiment.replicates
    files = [write_csv(effects, out / "paired_effects.csv"), write_csv(table, out / "systemic_ranking.csv")]
    key = ranking_figure(table, gens, out / "systemic_ranking.png", replicates)
    net = network_figure(scenario, table, out / "network_impact.png")

    ref_on = ok_runs(reference.runs)
    ref_on = ref_on[ref_on[CHANNEL].astype(bool)]
    top = table.iloc[0]
    deepest = min(gens, key=lambda g: top[f"trough_{g}"]) if gens else None
    most = table.sort_values(["further_defaults", "lender_loss"], ascending=False).iloc[0]
    spreading = int((table["further_defaults"] > 0).sum())
    on_off = (table["further_defaults"] - table["further_defaults_off"]).abs()
    loss_on_off = (table["lender_loss"] - table["lender_loss_off"]).abs()
    channel = (
        "Switching the price channel off (covenants see fundamental value, not the secondary mark) changes "
        "no agent's expected further defaults"
        if on_off.max() < 0.005
        else "Switching the price channel off (covenants see fundamental value, not the secondary mark) "
        f"changes an agent's expected further defaults by at most {on_off.max():.2f} "
        f"({table.loc[on_off.idxmax(), 'name']})"
    ) + (
        " or lender losses (by less than $5M)."
        if loss_on_off.max() < 5e6
        else f", and expected lender losses by at most ${_usd(float(loss_on_off.max()))}B."
    )
    finding = (
        f"The default that costs lenders most is {top['name']}'s: ${_usd(top['lender_loss'])}B "
        f"[{_usd(top['lender_loss_low'])}, {_usd(top['lender_loss_high'])}] on average over {replicates} paired "
        f"replicates (${_usd(top['lender_loss_p99'])}B at the 99 % quantile); "
        + (
            f"the engine's network-only clearing at the start, with the repossessed GPUs at their marks, sees "
            f"${_usd(top['engine_lender_loss_off'])}B of it, and the rest comes over the following year, as the "
            "lenders sell the repossessed fleet into the thin secondary market and the GPUs they still hold lose value"
            if top["engine_lender_loss_off"] <= top["lender_loss"]
            else f"the engine's network-only clearing at the start, with the repossessed GPUs at their marks, puts it "
            f"higher, at ${_usd(top['engine_lender_loss_off'])}B: the difference is what the estate and its "
            "lenders recover during the workout beyond the clearing's marks at the start"
        )
        + (
            f" ({deepest}'s secondary price falls a further {-100 * top[f'trough_{deepest}']:.0f} pp peak to trough)"
            if deepest and top[f"trough_{deepest}"] < -0.005
            else ""
        )
        + f". {spreading} of the {len(table)} single defaults set off further defaults on average, most of all "
        f"{most['name']}'s ({most['further_defaults']:+.2f} [{most['further_defaults_low']:+.2f}, "
        f"{most['further_defaults_high']:+.2f}], of them {most['further_borrower_defaults']:+.2f} borrowers; "
        f"{most['engine_further_defaults_off']:d} in the network-only clearing at the start). " + channel
    )
    rows = "\n".join(
        f"| {r['name']} | {r['type']} | {_ci(r, 'further_defaults', lambda x: f'{x:+.2f}')} | "
        f"{r['further_borrower_defaults']:+.2f} | {r['further_defaults_p99']:+.1f} | {r['further_defaults_off']:+.2f} | "
        f"{_ci(r, 'lender_loss', _usd)} | {_usd(r['lender_loss_p99'])} | {_usd(r['lender_loss_off'])} | "
        + " / ".join(f"{100 * r[f'trough_{g}']:+.1f}" for g in gens)
        + f" | {r['debtrank']:.3f} | {r['engine_further_defaults_off']:d} | {_usd(r['engine_lender_loss_off'])} | "
        f"{r['engine_further_defaults_on']:d} | {_usd(r['engine_lender_loss_on'])} |"
        for _, r in table.iterrows()
    )
    body = (
        "Each row is one agent forced into default alone in month 1 of the scenario, paired replicate by "
        "replicate with the same seed and posterior draw and no forced default. Columns: expected further "
        "defaults (95 % CI), of them borrowers, and their 99 % quantile; the same without the price channel (covenants see "
        "fundamental value); expected lender losses in USD bn (95 % CI), 99 % quantile, and without the "
        f"channel; the extra peak-to-trough fall of the secondary price in pp ({' / '.join(gens)}; negative = "
        "deeper); then the network-only measures at the start: DebtRank (the share of the rest of the "
        "system's equity the default destroys) and the engine's cascade and clearing within the month of "
        "the default with the price channel off and on (further defaults, lender losses USD bn).\n\n"
        "| agent | type | further defaults | borrowers | p99 | w/o price channel | lender losses | p99 | "
        "w/o price channel | price trough, pp | DebtRank | engine, network only: defaults | losses | engine "
        "with price: defaults | losses |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        + rows
        + f"\n\nWith no forced default (the reference), {len(ref_on)} runs have "
        f"{num(ref_on['defaults_total']).mean():.2f} defaults on average and lenders lose "
        f"${_usd(float(lender_loss(ref_on).mean()))}B. Tables: `systemic_ranking.csv` (this table with every "
        "interval), `paired_effects.csv` (every paired difference)."
        + (f"\n\n{UNKNOWNS[forced.scenario['name']]}" if forced.scenario["name"] in UNKNOWNS else "")
    )
    return Report(key, [key, net, *files], finding, body, {"table": table, "effects": effects})
