"""Lender-to-lender clearing and systemic-importance measures on sparse liability networks.

The cascade hands in the interbank layer of the ledger as an edge list (`debtor`, `creditor`, `amount`,
one row per loan; parallel loans between the same pair are summed) and gets plain arrays back. Everything
runs on scipy.sparse matrices and never forms a dense n x n matrix, so thousands of lenders clear in
milliseconds. Pure numpy/scipy: nothing here knows about Mesa or the rest of the model.

References
----------
- Eisenberg, L. & Noe, T. H. (2001). Systemic risk in financial systems. Management Science 47(2), 236-249.
- Gai, P. & Kapadia, S. (2010). Contagion in financial networks. Proc. R. Soc. A 466(2120), 2401-2423.
- Battiston, S., Puliga, M., Kaushik, R., Tasca, P. & Caldarelli, G. (2012). DebtRank: too central to
  fail? Financial networks, the FED and systemic risk. Scientific Reports 2, 541.
- Bardoscia, M., Battiston, S., Caccioli, F. & Caldarelli, G. (2015). DebtRank: a microscopic foundation
  for shock propagation. PLoS ONE 10(6), e0130406.
"""

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

SHORTFALL_RTOL = 1e-9
"""A payment short of what is owed by less than this fraction of it is rounding, not a default."""

_DIRECT_SOLVE_MAX = 500
"""Defaulting sets up to this size are solved by sparse LU (a few ms); larger ones iteratively first."""

_LINEAR_TAIL_EVERY = 64
"""Linear DebtRank tries to finish its columns in closed form (`_linear_tail`) every this many rounds."""

_SCENARIO_BATCH = 256
"""Single-node shocks that `systemic_importance` propagates together (memory: n x batch floats)."""


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of Eisenberg-Noe clearing: what each node pays, who defaulted, and when."""

    payments: np.ndarray
    """Clearing payment vector p*: the total each node pays (interbank and external creditors together)."""
    recovery: np.ndarray
    """p*_i / pbar_i, the share of its obligations node i honours (1.0 where it owes nothing)."""
    defaulted: np.ndarray
    """True where p*_i < pbar_i by more than `SHORTFALL_RTOL` of pbar_i."""
    iterations: int
    """Rounds of fictitious default, or fixed-point iterations, that were run."""
    default_order: np.ndarray
    """Round in which each node first fell short (0: short even if everyone else pays in full); -1 never."""


def eisenberg_noe(
    n: int,
    debtor: ArrayLike,
    creditor: ArrayLike,
    amount: ArrayLike,
    external_assets: ArrayLike,
    external_liabilities: ArrayLike | None = None,
    method: Literal["fictitious_default", "fixed_point"] = "fictitious_default",
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> ClearingResult:
    """Greatest clearing vector p* = min(pbar, max(0, e + Pi^T p*)) of Eisenberg & Noe (2001).

    pbar_i is node i's external liabilities plus everything it owes other nodes; Pi_ij = L_ij / pbar_i.
    External creditors rank pari passu with interbank ones: they are part of pbar but are paid outside
    the network, so Pi's rows sum to less than one. Negative external assets are allowed (a node's
    payments are floored at zero).

    `fictitious_default` is EN's algorithm (exact, at most n rounds for non-negative external assets);
    `fixed_point` iterates p <- min(pbar, max(0, e + Pi^T p)) down from pbar. Both return the greatest
    clearing vector; the first is the one to use, the second is the slow, obviously-correct reference.
    For `fixed_point`, `default_order` holds the iteration at which a node's payment first fell short.
    """
    if method not in ("fictitious_default", "fixed_point"):
        raise ValueError(f"method must be 'fictitious_default' or 'fixed_point', got {method!r}")
    if not tol > 0 or max_iter < 1:
        raise ValueError(f"tol must be > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    d, c, a = _edge_list(n, debtor, creditor, amount)
    e = _node_vector("external_assets", external_assets, n)
    ext = (
        np.zeros(n)
        if external_liabilities is None
        else _node_vector("external_liabilities", external_liabilities, n)
    )
    if np.any(ext < 0):
        raise ValueError("external_liabilities must be >= 0")
    owed = _sparse(n, d, c, a)  # owed[i, j]: what i owes j
    pbar = owed.sum(axis=1) + ext
    # Pi^T: row i holds i's shares of the other nodes' payments.
    pi_t = _divide_rows(owed, pbar).T.tocsr()
    order = np.full(n, -1, dtype=np.int64)
    if method == "fictitious_default":
        p, rounds = _fictitious_default(pi_t, pbar, e, order, tol, max_iter)
    else:
        p, rounds = _fixed_point(pi_t, pbar, e, pbar.copy(), order, 0, tol, max_iter)
    p = np.clip(p, 0.0, pbar)  # a solve can overshoot pbar by a rounding error
    recovery = np.divide(p, pbar, out=np.ones(n), where=pbar > 0)
    return ClearingResult(p, recovery, _short(p, pbar), rounds, order)


def zero_recovery(
    n: int,
    debtor: ArrayLike,
    creditor: ArrayLike,
    amount: ArrayLike,
    equity: ArrayLike,
    default_at_zero_equity: bool = True,
) -> np.ndarray:
    """Clearing with zero recovery (Gai & Kapadia 2010): claims on a failed node are lost in full.

    Node i fails when its equity, less its claims on failed nodes, is negative (or zero, with
    `default_at_zero_equity`, GK's solvency condition). The failed set is the least fixed point of that
    rule, found wave by wave as GK's cascade unfolds: wave 0 fails before any interbank loss, wave k+1
    through its claims on the nodes of waves up to k. Returns each node's wave (-1: never fails).
    """
    d, c, a = _edge_list(n, debtor, creditor, amount)
    eq = _node_vector("equity", equity, n).copy()
    waves: list[np.ndarray] = []
    _zero_recovery_waves(n, d, c, a, eq, default_at_zero_equity, waves)
    wave = np.full(n, -1, dtype=np.int64)
    for k, new in enumerate(waves):
        wave[new] = k
    return wave


def zero_recovery_failed(
    n: int,
    debtor: np.ndarray,
    creditor: np.ndarray,
    amount: np.ndarray,
    equity: np.ndarray,
    default_at_zero_equity: bool = True,
) -> np.ndarray:
    """The nodes ``zero_recovery`` fails (mask), without its input checks (about ten passes over the
    edges) or the waves: for a caller whose arrays are valid by construction and who needs only the
    failed set (the cascade, which passes its own ledger's loans)."""
    eq = np.array(equity, dtype=float)
    return _zero_recovery_waves(n, debtor, creditor, amount, eq, default_at_zero_equity, None)


def _zero_recovery_waves(
    n: int,
    d: np.ndarray,
    c: np.ndarray,
    a: np.ndarray,
    eq: np.ndarray,
    default_at_zero_equity: bool,
    waves: list[np.ndarray] | None,
) -> np.ndarray:
    """``zero_recovery``'s failed set (mask), wave by wave; ``eq`` (the caller's own) loses the claims on
    failed nodes, and each wave's newly failed nodes (a mask) are appended to ``waves`` if given."""
    fails = np.less_equal if default_at_zero_equity else np.less
    failed = new = fails(eq, 0.0)
    while new.any():
        if waves is not None:
            waves.append(new)
        lost = new[d].nonzero()[0]  # every claim on the newly failed, lost in full
        eq -= np.bincount(c[lost], weights=a[lost], minlength=n)
        now = fails(eq, 0.0)  # losses only lower equity: a failed node stays failed
        new, failed = now ^ failed, now
    return failed


def debtrank(
    n: int,
    debtor: ArrayLike,
    creditor: ArrayLike,
    amount: ArrayLike,
    equity: ArrayLike,
    shocked: ArrayLike,
    shock: float = 1.0,
    linear: bool = False,
    threshold: bool = False,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> np.ndarray:
    """Final relative equity loss h (0 = untouched, 1 = wiped out) after the `shocked` nodes lose `shock`.

    Impact of debtor j on creditor i: W_ij = min(1, exposure_ij / equity_i). Three propagation rules:

    - default: Battiston et al. (2012). A node passes on its distress once, in the step after it first
      becomes distressed (undistressed -> distressed -> inactive), which rules out reverberation.
    - `linear=True`: Bardoscia et al. (2015), h_{t+1} = min(1, h_t + Lambda (h_t - h_{t-1})) with
      Lambda_ij = exposure_ij / equity_i and h_0 = 0: losses reverberate round cycles, and below
      saturation the limit is (I - Lambda)^{-1} h_1.
    - `threshold=True`: distress passes on only from nodes that are wiped out (h = 1) and then in full,
      h = min(1, h_1 + Lambda 1[h = 1]); with shock = 1 this is the Gai-Kapadia cascade with a loss equal
      to equity counting as default.

    `shocked` is a bool mask or node ids; `equity` is each node's equity before the shock and must be
    positive (losses are measured relative to it).
    """
    if linear and threshold:
        raise ValueError("choose at most one of linear=True and threshold=True")
    if not 0.0 <= shock <= 1.0:
        raise ValueError(f"shock is a relative equity loss and must lie in [0, 1], got {shock}")
    exposure, eq = _exposures(n, debtor, creditor, amount, equity)
    h0 = np.where(_node_set("shocked", shocked, n), float(shock), 0.0)[:, None]
    return _propagate(exposure, eq, h0, linear, threshold, tol, max_iter)[:, 0]


def systemic_importance(
    n: int,
    debtor: ArrayLike,
    creditor: ArrayLike,
    amount: ArrayLike,
    equity: ArrayLike,
    linear: bool = False,
    threshold: bool = False,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> np.ndarray:
    """DebtRank of every node: the loss it alone causes to the rest of the system if it defaults.

    R_j = sum_{i != j} v_i h_i, with h the DebtRank of the shock h_j = 1 and v_i = equity_i / sum(equity),
    leaving out j's own loss as Battiston et al. (2012) do. Scenarios run in batches, one sparse
    matrix-matrix product per propagation step; `linear`/`threshold` select the rule as in `debtrank`.
    """
    if linear and threshold:
        raise ValueError("choose at most one of linear=True and threshold=True")
    exposure, eq = _exposures(n, debtor, creditor, amount, equity)
    weight = eq / eq.sum() if n else eq
    importance = np.empty(n)
    for start in range(0, n, _SCENARIO_BATCH):
        nodes = np.arange(start, min(n, start + _SCENARIO_BATCH))
        cols = np.arange(nodes.size)
        h0 = np.zeros((n, nodes.size))
        h0[nodes, cols] = 1.0
        h = _propagate(exposure, eq, h0, linear, threshold, tol, max_iter)
        h[nodes, cols] = 0.0
        importance[nodes] = weight @ h
    return importance


# --- Eisenberg-Noe internals ------------------------------------------------------------------------


def _fictitious_default(
    pi_t: sp.csr_array, pbar: np.ndarray, e: np.ndarray, order: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, int]:
    """EN's fictitious default, kept exact with negative external assets.

    Each round starts from an upper bound u >= p* (first pbar) and splits the nodes by their value at u:
    solvent (pay pbar), broke (value <= 0: pay nothing, since p* <= u) and the rest, who pay what they
    have, solved on that subset (`_pay_what_they_have`) with others' payments fixed. These are again an
    upper bound and fall monotonically, so the solvent set only shrinks and the broke set only grows:
    when neither changes, the payments are the greatest clearing vector. In the one case the subset
    solve cannot settle (an exact tie, see `_pay_what_they_have`) the rest is left to the fixed-point
    iteration from the current bound, which converges to the same answer.
    """
    n = pbar.size
    owes = pbar > 0
    slack = tol * (pbar + np.abs(e) + pi_t @ pbar)  # rounding in a node's value, not a shortfall
    u = pbar.copy()
    partition: tuple[np.ndarray, np.ndarray] | None = None
    for rnd in range(max_iter):
        value = e + pi_t @ u
        solvent = ~owes | (value >= pbar - slack)
        broke = ~solvent & (value <= 0)
        if (
            partition is not None
            and np.array_equal(solvent, partition[0])
            and np.array_equal(broke, partition[1])
        ):
            return u, rnd
        partition = (solvent, broke)
        paying = ~solvent & ~broke
        p = np.where(solvent, pbar, 0.0)
        if paying.any():
            x = _pay_what_they_have(pi_t, e, p, paying, u[paying])
            if x is None:
                return _fixed_point(pi_t, pbar, e, u, order, rnd, tol, max_iter)
            p[paying] = x
        _record_shortfall(order, p, pbar, rnd)
        u = p
    raise RuntimeError(f"fictitious default did not settle within max_iter={max_iter} rounds (n={n})")


def _pay_what_they_have(
    pi_t: sp.csr_array, e: np.ndarray, p: np.ndarray, paying: np.ndarray, bound: np.ndarray
) -> np.ndarray | None:
    """Payments x of the `paying` set when everyone else pays `p`: the greatest x = max(0, b + A x).

    A is Pi^T restricted to the set, b its external assets plus what it receives from the rest, `bound`
    the current upper bound of its payments. The zero floor makes the map convex and piecewise linear,
    so policy iteration from below (solve with a set of payers, zero for the rest; re-admit whoever then
    has positive value; repeat) rises to the fixed point, one sparse solve a step. The first try makes
    everyone a payer, EN's own step and the only one needed when external assets are >= 0. If that system
    is singular, a closed ring of payers that leaks nothing out (possible only with negative external
    assets), the iteration restarts from the payers with b > 0: no such ring lies inside them, and none
    is re-admitted whole, since one of its members must pay nothing. Every step's solution lies below
    `bound`; a solve that breaks it is treated as singular. Returns None only for exact ties (a closed
    ring whose cash nets to zero), where the caller falls back on the fixed-point iteration.
    """
    idx = np.flatnonzero(paying)
    a = pi_t[idx][:, idx]
    b = e[idx] + pi_t[idx] @ p
    slack = SHORTFALL_RTOL * max(1.0, float(np.abs(b).max()), float(bound.max()))
    payers = np.ones(idx.size, dtype=bool)
    restarted = grow = False
    for _ in range(idx.size + 2):  # after the first (re)start the payer set only grows
        x = np.zeros(idx.size)
        act = np.flatnonzero(payers)
        if act.size:
            solved = _solve(sp.eye_array(act.size, format="csc") - a[act][:, act].tocsc(), b[act])
            if solved is None or not np.all(solved <= bound[act] + slack):
                if restarted:
                    return None
                restarted = grow = True
                payers = b > 0
                continue
            x[act] = solved
        value = b + a @ x
        if np.all(np.abs(x - np.maximum(value, 0.0)) <= slack):
            return x
        payers = (value > 0) | (payers & grow)  # forcing growth keeps rounding from cycling
        grow = True
    return None


def _solve(system: sp.csc_array, rhs: np.ndarray) -> np.ndarray | None:
    """Solve (I - A) x = rhs for a defaulting set; None if the system is singular.

    spsolve is exact, but sparse LU fills in badly on random-like networks (a 3,000-node defaulting set
    of a 5,000-node Erdos-Renyi network takes ~0.5 s per round). I - A is an M-matrix, diagonally
    dominant by columns, so for large sets BiCGSTAB reaches a 1e-13 relative residual in a few dozen
    sparse matvecs; if it stalls (almost no leakage out of the set) the exact solve takes over.
    """
    from scipy.sparse.linalg import MatrixRankWarning, bicgstab, spsolve  # on first use: keeps imports fast

    if rhs.size > _DIRECT_SOLVE_MAX:
        x, info = bicgstab(system, rhs, rtol=1e-13, atol=0.0)
        if info == 0:
            return x
    with warnings.catch_warnings():
        warnings.simplefilter("error", MatrixRankWarning)
        try:
            return spsolve(system, rhs)
        except MatrixRankWarning:
            return None


def _fixed_point(
    pi_t: sp.csr_array,
    pbar: np.ndarray,
    e: np.ndarray,
    p: np.ndarray,
    order: np.ndarray,
    first: int,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int]:
    """Iterate p <- min(pbar, max(0, e + Pi^T p)) down from an upper bound of p*.

    The map is monotone (Eisenberg & Noe 2001), so from any p >= p* with Phi(p) <= p the iterates fall to the
    greatest clearing vector. Stops when no payment moves by more than tol * pbar_i.
    """
    for it in range(first, max_iter):
        new = np.clip(e + pi_t @ p, 0.0, pbar)
        _record_shortfall(order, new, pbar, it)
        if np.all(np.abs(new - p) <= tol * pbar):
            return new, it + 1
        p = new
    raise RuntimeError(
        f"Eisenberg-Noe fixed-point iteration did not converge within max_iter={max_iter} (tol={tol})"
    )


def _short(p: np.ndarray, pbar: np.ndarray) -> np.ndarray:
    return p < pbar * (1.0 - SHORTFALL_RTOL)


def _record_shortfall(order: np.ndarray, p: np.ndarray, pbar: np.ndarray, rnd: int) -> None:
    """Stamp the round on nodes whose payment fell short for the first time (payments only fall)."""
    order[(order < 0) & _short(p, pbar)] = rnd


# --- DebtRank internals -----------------------------------------------------------------------------


def _propagate(
    exposure: sp.csr_array,
    eq: np.ndarray,
    h0: np.ndarray,
    linear: bool,
    threshold: bool,
    tol: float,
    max_iter: int,
) -> np.ndarray:
    """Run DebtRank for every column of h0 (n x k, one scenario per column) at once."""
    if threshold:
        # Losses are summed in money, then divided: h >= 1 exactly when loss >= equity, as in Gai-Kapadia.
        failed = h0 >= 1.0
        while True:
            h = np.minimum(1.0, h0 + (exposure @ failed.astype(float)) / eq[:, None])
            if np.array_equal(h >= 1.0, failed):
                return h
            failed = h >= 1.0
    leverage = _divide_rows(exposure, eq)  # Lambda_ij = exposure_ij / equity_i
    if linear:
        previous, h = np.zeros_like(h0), h0.copy()
        for rnd in range(max_iter):
            step = h - previous
            if not np.any(np.abs(step) > tol):
                return h
            previous, h = h, np.minimum(1.0, h + leverage @ step)
            if rnd % _LINEAR_TAIL_EVERY == _LINEAR_TAIL_EVERY - 1:
                finished = _linear_tail(leverage, h, h - previous, tol)
                previous[:, finished] = h[:, finished]
        raise RuntimeError(f"linear DebtRank did not converge within max_iter={max_iter} (tol={tol})")
    impact = leverage.copy()
    impact.data = np.minimum(impact.data, 1.0)  # W_ij = min(1, Lambda_ij)
    h = h0.copy()
    distressed = h > 0
    inactive = np.zeros_like(distressed)
    while distressed.any():  # each node is distressed at most once per scenario, so this ends
        h = np.minimum(1.0, h + impact @ np.where(distressed, h, 0.0))
        inactive |= distressed
        distressed = (h > 0) & ~inactive
    return h


def _linear_tail(leverage: sp.csr_array, h: np.ndarray, step: np.ndarray, tol: float) -> np.ndarray:
    """Finish, in place, the columns of linear DebtRank whose remaining rounds saturate no one: near the
    stability limit (spectral radius of Lambda close to 1) the steps shrink too slowly to iterate out.
    If no node saturates from now on, the unsaturated nodes U gain sum_k Lambda_UU^k Lambda_U step =
    (I - Lambda_UU)^-1 Lambda_U step in all; that is the limit when it is non-negative and keeps every
    node of U below 1 (otherwise the series diverges or someone saturates, and iteration goes on).
    Returns which columns were finished (set to their limit)."""
    from scipy.sparse.linalg import spsolve  # on first use: keeps imports fast

    finished = np.zeros(h.shape[1], dtype=bool)
    for k in np.flatnonzero(np.any(np.abs(step) > tol, axis=0)):
        free = np.flatnonzero(h[:, k] < 1.0)
        if free.size == 0:
            continue
        push = (leverage[free] @ step[:, k]).ravel()
        system = (sp.eye_array(free.size, format="csc") - leverage[free][:, free]).tocsc()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tail = np.atleast_1d(spsolve(system, push))
        if np.all(np.isfinite(tail)) and np.all(tail >= -tol) and np.all(h[free, k] + tail < 1.0):
            h[free, k] += np.maximum(tail, 0.0)
            finished[k] = True
    return finished


def _exposures(
    n: int, debtor: ArrayLike, creditor: ArrayLike, amount: ArrayLike, equity: ArrayLike
) -> tuple[sp.csr_array, np.ndarray]:
    d, c, a = _edge_list(n, debtor, creditor, amount)
    eq = _node_vector("equity", equity, n)
    if np.any(eq <= 0):
        raise ValueError(
            f"equity must be > 0 (not at nodes {np.flatnonzero(eq <= 0)[:10].tolist()}): "
            "DebtRank measures losses relative to each node's equity before the shock"
        )
    return _sparse(n, c, d, a), eq  # exposure[i, j]: what j owes i


# --- Input handling ---------------------------------------------------------------------------------


def _edge_list(
    n: int, debtor: ArrayLike, creditor: ArrayLike, amount: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the edge list once, so a bad ledger fails here with the field named, not deep in scipy."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    d, c = np.asarray(debtor), np.asarray(creditor)
    a = np.asarray(amount, dtype=float)
    if not (d.ndim == c.ndim == a.ndim == 1 and d.shape == c.shape == a.shape):
        raise ValueError(
            "debtor, creditor and amount must be 1-D arrays of equal length, "
            f"got shapes {d.shape}, {c.shape}, {a.shape}"
        )
    for name, ids in (("debtor", d), ("creditor", c)):
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{name} must hold integer node ids in [0, {n})")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("amount must be finite and >= 0")
    if np.any(d == c):
        raise ValueError(
            f"a node cannot owe itself (debtor == creditor at rows {np.flatnonzero(d == c)[:10].tolist()})"
        )
    return d.astype(np.intp), c.astype(np.intp), a


def _sparse(n: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> sp.csr_array:
    """n x n CSR matrix from triplets; duplicates (parallel loans) are summed, zero loans dropped."""
    matrix = sp.csr_array(sp.coo_array((values, (rows, cols)), shape=(n, n)))
    matrix.eliminate_zeros()
    return matrix


def _divide_rows(matrix: sp.csr_array, by: np.ndarray) -> sp.csr_array:
    """Row i divided by by_i, entry by entry (no reciprocal that could overflow for tiny by_i).

    Every stored entry is positive, so a row with entries has a positive divisor wherever `by` is a row
    sum plus something non-negative (pbar) or is checked positive (equity).
    """
    scaled = matrix.copy()
    scaled.data = scaled.data / np.repeat(by, np.diff(scaled.indptr))
    return scaled


def _node_vector(name: str, values: ArrayLike, n: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a finite array of shape ({n},), got shape {v.shape}")
    return v


def _node_set(name: str, nodes: ArrayLike, n: int) -> np.ndarray:
    """A bool mask of length n, or node ids, as a fresh bool mask."""
    arr = np.asarray(nodes)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{name} as a mask must have shape ({n},), got {arr.shape}")
        return arr.copy()
    mask = np.zeros(n, dtype=bool)
    if arr.size:
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n:
            raise ValueError(f"{name} must be a bool mask or a 1-D array of node ids in [0, {n})")
        mask[arr] = True
    return mask
