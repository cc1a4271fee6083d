"""Eisenberg & Noe (2001) clearing, through the model's engine.

Reference: Eisenberg, L. & Noe, T. H. (2001). Systemic risk in financial systems. Management Science
47(2), 236-249: the clearing vector p* = min(pbar, e + Pi^T p*) (Definition 1), its existence and the
greatest clearing vector (Theorem 1), the fictitious default algorithm (section 3) and the two-firm
example of section 2 that shows clearing vectors need not be unique.

What runs: ``core.clearing.eisenberg_noe`` is the function ``model.cascade.clear_lenders`` calls when
``cascade.interbank_recovery = "clearing"``. The worked examples run as explicit scenarios through
``GPUCreditModel`` (the cascade's clearing decides who fails and books each loan's recovery), and the
properties are checked on seeded random networks:
- fictitious default and fixed-point iteration agree;
- payments never exceed obligations and never fall below zero;
- payments are monotone (non-decreasing) in external assets;
- the result is the greatest clearing vector: it is a fixed point, and the fixed-point iteration from
  zero (which converges to the least clearing vector) never ends above it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.clearing import eisenberg_noe
from experiments.validation.common import Report, figure_path, interbank_loan, reduced_scenario

# A four-bank example with a fundamental and a contagious default, solved by hand in
# tests/test_clearing.py (test_eisenberg_noe_four_bank_contagion_worked_by_hand):
# p* = (38/3, 55/3, 10, 20), recovery (19/30, 11/12, 1, 1).
FOUR_BANK = {
    "debts": [
        ("A", "B", 10.0),
        ("A", "C", 10.0),
        ("B", "A", 4.0),
        ("B", "C", 8.0),
        ("C", "D", 6.0),
        ("D", "A", 4.0),
    ],
    "external_assets": {"A": 5.0, "B": 12.0, "C": 0.0, "D": 15.0},
    "external_liabilities": {"A": 0.0, "B": 8.0, "C": 4.0, "D": 16.0},
    "recovery": {"A": 19 / 30, "B": 11 / 12, "C": 1.0, "D": 1.0},
}
TOL = 1e-9


def engine_recovery(example: dict) -> tuple[dict[str, float], dict[str, bool]]:
    """Run an example as an explicit scenario through ``GPUCreditModel``: the cascade's lender clearing
    decides who fails; a failed bank's recovery is read from its written-off loans."""
    from model.model import GPUCreditModel

    names = sorted(example["external_assets"])
    agents = [
        {
            "id": b,
            "type": "bank",
            "external_assets": example["external_assets"][b],
            "external_liabilities": example["external_liabilities"][b],
        }
        for b in names
    ]
    loans = [interbank_loan(c, d, a) for d, c, a in example["debts"]]  # (debtor, creditor, amount)
    model = GPUCreditModel(
        reduced_scenario(agents, loans, {"interbank_recovery": "clearing", "default_at_zero_equity": False})
    )
    model.resolve_now()
    led = model.ledger
    loans_ = led.loans
    recovery, failed = {}, {}
    for i, b in enumerate(names):
        mine = loans_.debtor == i
        owed = loans_.original_principal[mine].sum()
        lost = (loans_.exposure_at_default[mine] - loans_.recovered[mine]).sum()
        recovery[b] = 1.0 - lost / owed if owed > 0 else 1.0
        failed[b] = bool(led.defaulted[i])
    return recovery, failed


def random_problem(rng: np.random.Generator, n: int, light: bool = False) -> tuple:
    """A random liability network (density 0.2), outside creditors and external assets. Heavy: external
    assets uniform on [0, 15], most nodes default. ``light``: each node's net worth with everyone paying
    in full is uniform on [-2, 30], so about one node in sixteen is short on its own and a few more
    through it."""
    mask = (rng.random((n, n)) < 0.2) & ~np.eye(n, dtype=bool)
    debtor, creditor = np.nonzero(mask)
    amount = rng.uniform(1.0, 10.0, debtor.size)
    ext = rng.uniform(0.0, 10.0, n)
    if light:
        owed = np.bincount(debtor, amount, minlength=n) + ext
        due_in = np.bincount(creditor, amount, minlength=n)
        e = np.maximum(owed - due_in + rng.uniform(-2.0, 30.0, n), 0.0)
    else:
        e = rng.uniform(0.0, 15.0, n)
    return n, debtor, creditor, amount, e, ext


def properties(draws: int, n: int, seed: int, light: bool = False) -> dict[str, float]:
    """Worst-case deviations over seeded random networks (all should be ~0), heavy or ``light``
    defaults; ``defaults`` is the mean number of defaulting nodes per network."""
    rng = np.random.default_rng(seed)
    worst = {
        "fd_vs_fp": 0.0,
        "above_pbar": 0.0,
        "below_zero": 0.0,
        "non_monotone": 0.0,
        "not_fixed_point": 0.0,
        "least_above_greatest": 0.0,
        "defaults": 0.0,
    }
    for _ in range(draws):
        n_, d, c, a, e, ext = random_problem(rng, n, light)
        fd = eisenberg_noe(n_, d, c, a, e, ext)
        fp = eisenberg_noe(n_, d, c, a, e, ext, method="fixed_point", tol=1e-13)
        pbar = np.bincount(d, a, minlength=n_) + ext
        scale = max(1.0, float(pbar.max()))
        worst["fd_vs_fp"] = max(worst["fd_vs_fp"], float(np.abs(fd.payments - fp.payments).max()) / scale)
        worst["above_pbar"] = max(worst["above_pbar"], float((fd.payments - pbar).max()))
        worst["below_zero"] = max(worst["below_zero"], float(-fd.payments.min()))
        bumped = eisenberg_noe(n_, d, c, a, e + rng.uniform(0.0, 3.0, n_), ext)
        worst["non_monotone"] = max(worst["non_monotone"], float((fd.payments - bumped.payments).max()))
        pi_t = np.zeros((n_, n_))
        np.add.at(pi_t, (c, d), a / pbar[d])
        phi = np.minimum(pbar, np.maximum(0.0, e + pi_t @ fd.payments))
        worst["not_fixed_point"] = max(
            worst["not_fixed_point"], float(np.abs(phi - fd.payments).max()) / scale
        )
        low = np.zeros(n_)
        for _ in range(10_000):  # Picard iteration from 0 rises to the least clearing vector
            new = np.minimum(pbar, np.maximum(0.0, e + pi_t @ low))
            if np.abs(new - low).max() <= 1e-13 * scale:
                break
            low = new
        worst["least_above_greatest"] = max(worst["least_above_greatest"], float((low - fd.payments).max()))
        worst["defaults"] += fd.defaulted.sum() / draws
    return worst


def fixed_point_gap(seed: int, n: int) -> float:
    """The smallest fixed-point violation over two perturbations of a light network's clearing vector
    (scaled by 0.999; one defaulter's payment raised by 1e-6 of the largest obligation): the property
    check must reject both."""
    rng = np.random.default_rng(seed)
    n_, d, c, a, e, ext = random_problem(rng, n, light=True)
    fd = eisenberg_noe(n_, d, c, a, e, ext)
    pbar = np.bincount(d, a, minlength=n_) + ext
    pi_t = np.zeros((n_, n_))
    np.add.at(pi_t, (c, d), a / pbar[d])
    scale = max(1.0, float(pbar.max()))
    bumped = fd.payments.copy()
    bumped[int(np.argmax(fd.defaulted))] += 1e-6 * scale
    gaps = [
        float(np.abs(np.minimum(pbar, np.maximum(0.0, e + pi_t @ p)) - p).max()) / scale
        for p in (0.999 * fd.payments, bumped)
    ]
    return min(gaps)


def run(quick: bool = False, out: Path | None = None, seed: int = 2001) -> Report:
    report = Report("eisenberg_noe", "Eisenberg & Noe (2001) clearing vector, through the cascade's clearing")
    # EN (2001), section 2: two firms owing each other 1 with no cash; every (t, t) clears, greatest (1, 1).
    two = eisenberg_noe(2, [0, 1], [1, 0], [1.0, 1.0], [0.0, 0.0])
    report.add(
        "EN 2001 sec. 2 two-firm example: greatest clearing vector",
        str(np.round(two.payments, 12).tolist()),
        "[1.0, 1.0]",
        "exact",
        np.allclose(two.payments, [1.0, 1.0], rtol=0, atol=1e-12),
    )
    recovery, failed = engine_recovery(FOUR_BANK)
    for b in sorted(recovery):
        ref = FOUR_BANK["recovery"][b]
        report.add(
            f"four-bank example via GPUCreditModel: recovery of {b}",
            recovery[b],
            ref,
            f"abs {TOL:g}",
            abs(recovery[b] - ref) <= TOL,
        )
    report.add(
        "four-bank example: who fails (engine)",
        ",".join(b for b in sorted(failed) if failed[b]),
        "A,B",
        "exact",
        [b for b in sorted(failed) if failed[b]] == ["A", "B"],
    )
    draws, n = (50, 30) if quick else (500, 60)
    heavy, light = properties(draws, n, seed), properties(draws, n, seed, light=True)
    worst = {k: max(heavy[k], light[k]) for k in heavy}
    labels = {
        "fd_vs_fp": "fictitious default vs fixed point, max |diff| / max pbar",
        "above_pbar": "max (p* - pbar): payments never exceed obligations",
        "below_zero": "max (-p*): payments never negative",
        "non_monotone": "max (p*(e) - p*(e + de)): monotone in external assets",
        "not_fixed_point": "max |Phi(p*) - p*| / max pbar",
        "least_above_greatest": "max (least clearing vector - p*): p* is the greatest",
    }
    for key, label in labels.items():
        report.add(label, worst[key], 0.0, "<= 1e-9", worst[key] <= 1e-9)
    share = light["defaults"] / n
    report.add(
        "light-default networks: mean share of nodes defaulting",
        share,
        "a few per network",
        "in (0, 0.25]",
        0.0 < share <= 0.25,
    )
    wrong = fixed_point_gap(seed, n)
    report.add(
        "p* scaled by 0.999 or a defaulter's payment moved by 1e-6 pbar: |Phi(p) - p| / max pbar",
        wrong,
        "> 1e-9 (rejected)",
        "-",
        wrong > 1e-9,
    )
    report.notes.append(
        f"{draws} heavy + {draws} light random networks of {n} banks (density 0.2), seed {seed}; mean "
        f"defaults per network {heavy['defaults']:.1f} (heavy), {light['defaults']:.1f} (light)"
    )
    report.notes.append(
        "The four-bank example is hand-derived (tests/test_clearing.py), not taken from a paper;"
        " EN (2001) give the two-firm example only as an illustration of non-uniqueness."
    )
    report.figure = plot(seed, figure_path(out, "eisenberg_noe"))
    return report


def plot(seed: int, path: Path) -> Path:
    """Payments by both methods on one random network, and p* of a node against its external assets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    n, d, c, a, e, ext = random_problem(rng, 60)
    fd = eisenberg_noe(n, d, c, a, e, ext)
    fp = eisenberg_noe(n, d, c, a, e, ext, method="fixed_point", tol=1e-13)
    pbar = np.bincount(d, a, minlength=n) + ext
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(fd.payments / pbar, fp.payments / pbar, "o", ms=4)
    axes[0].plot([0, 1], [0, 1], "k:", lw=1)
    axes[0].set_xlabel("recovery p*/pbar, fictitious default")
    axes[0].set_ylabel("recovery p*/pbar, fixed point")
    axes[0].set_title("the two algorithms agree")
    node = int(np.argmax(fd.defaulted)) if fd.defaulted.any() else 0
    grid = np.linspace(0.0, 2.0 * pbar[node], 60)
    pay = [eisenberg_noe(n, d, c, a, np.where(np.arange(n) == node, g, e), ext).payments for g in grid]
    pay = np.array(pay)
    axes[1].plot(grid, pay[:, node] / pbar[node], label=f"node {node}")
    axes[1].plot(grid, pay.sum(axis=1) / pbar.sum(), label="system")
    axes[1].set_xlabel(f"external assets of node {node}")
    axes[1].set_ylabel("recovery")
    axes[1].set_title("monotone in external assets")
    axes[1].legend()
    fig.suptitle(
        f"Eisenberg-Noe clearing, one random network of {n} banks (seed {seed}): exact, no sampling error",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
