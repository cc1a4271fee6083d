"""Tests for core/clearing.py: Eisenberg-Noe clearing, the Gai-Kapadia cascade and DebtRank.

Expected numbers come from hand calculations (shown in comments) or from small dense reference
computations written here with numpy, never from the function under test.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import clearing
from core.clearing import debtrank, eisenberg_noe, systemic_importance, zero_recovery, zero_recovery_failed

# --- helpers and strategies -------------------------------------------------------------------------


def dense_liabilities(n: int, debtor: np.ndarray, creditor: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """L[i, j] = what i owes j, parallel loans summed (dense: for small test networks only)."""
    owed = np.zeros((n, n))
    np.add.at(owed, (debtor, creditor), amount)
    return owed


def dense_map(owed: np.ndarray, e: np.ndarray, ext: np.ndarray):
    """pbar and Phi(p) = min(pbar, max(0, e + Pi^T p)) of Eisenberg & Noe (2001), computed densely."""
    pbar = owed.sum(axis=1) + ext
    pi = np.divide(owed, pbar[:, None], out=np.zeros_like(owed), where=pbar[:, None] > 0)
    return pbar, lambda p: np.clip(e + pi.T @ p, 0.0, pbar)


def dense_zero_recovery_cascade(owed: np.ndarray, capital: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Gai-Kapadia with zero recovery, for reference: a creditor defaults once its losses on defaulted
    debtors reach its capital (a loss equal to capital counts as default)."""
    defaulted = initial.copy()
    while True:
        new = (owed.T @ defaulted >= capital) & ~defaulted
        if not new.any():
            return defaulted
        defaulted |= new


def dense_fixed_point(phi, start: np.ndarray, tol: float) -> np.ndarray:
    """Plain Picard iteration from `start` until no entry moves by more than tol, for reference."""
    p = start
    for _ in range(100_000):
        new = phi(p)
        if np.max(np.abs(new - p), initial=0.0) <= tol:
            return new
        p = new
    raise AssertionError("the reference iteration did not converge")


FLOAT_AMOUNTS = st.floats(0.0, 100.0, allow_subnormal=False)


@st.composite
def edge_lists(draw, max_n: int = 10, amounts: st.SearchStrategy[float] = FLOAT_AMOUNTS):
    """Random directed multigraphs without self-loans, as (n, debtor, creditor, amount)."""
    n = draw(st.integers(1, max_n))
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(1, max(1, n - 1)), amounts),
            max_size=0 if n == 1 else 4 * n,
        )
    )
    debtor = np.array([i for i, _, _ in edges], dtype=np.int64)
    creditor = (debtor + np.array([k for _, k, _ in edges], dtype=np.int64)) % n
    amount = np.array([a for _, _, a in edges], dtype=float)
    return n, debtor, creditor, amount


@st.composite
def clearing_problems(draw, leak: bool = True):
    """A network plus external assets (negative allowed) and external liabilities.

    With `leak`, every node owes outside creditors at least a tenth of its interbank debt, so no set of
    defaulters is closed and the fixed-point iteration converges geometrically (rate <= 1/1.1).
    """
    n, debtor, creditor, amount = draw(edge_lists())
    # a tiny negative outside asset drains a closed ring by a constant amount per Picard step, so the
    # slow reference (fixed_point) would need ~pbar/|e| iterations: keep such leaks at least 0.01
    assets = st.one_of(st.floats(-20.0, -0.01), st.floats(0.0, 100.0, allow_subnormal=False))
    e = np.array(draw(st.lists(assets, min_size=n, max_size=n)))
    if not leak:
        return n, debtor, creditor, amount, e, None
    interbank = np.bincount(debtor, amount, minlength=n)
    share = np.array(draw(st.lists(st.floats(0.1, 2.0), min_size=n, max_size=n)))
    extra = np.array(draw(st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n)))
    return n, debtor, creditor, amount, e, share * interbank + extra


# --- Eisenberg-Noe: worked examples -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["fictitious_default", "fixed_point"])
def test_eisenberg_noe_two_firm_example_gives_the_greatest_clearing_vector(method):
    """The two-firm example Eisenberg & Noe (2001) use to show clearing vectors need not be unique.

    Two firms owe each other 1 and have no operating cash flow (e = 0). Phi(t, t) = (t, t) for every
    t in [0, 1], so each (t, t) clears; the greatest, (1, 1), is everyone paying in full. A little cash
    at one firm, e = (0.01, 0), makes it unique: p1 = min(1, 0.01 + p2), p2 = min(1, p1) gives p = (1, 1).
    """
    for e in ([0.0, 0.0], [0.01, 0.0]):
        result = eisenberg_noe(2, [0, 1], [1, 0], [1.0, 1.0], e, method=method)
        np.testing.assert_allclose(result.payments, [1.0, 1.0], rtol=1e-12)
        assert not result.defaulted.any()
        assert result.default_order.tolist() == [-1, -1]
    # The least clearing vector of the first case, (0, 0), is one too: Phi(0, 0) = (min(1, 0), min(1, 0)).
    _, phi = dense_map(
        dense_liabilities(2, np.array([0, 1]), np.array([1, 0]), np.ones(2)), np.zeros(2), np.zeros(2)
    )
    np.testing.assert_array_equal(phi(np.zeros(2)), np.zeros(2))


def test_eisenberg_noe_four_bank_contagion_worked_by_hand():
    """A four-bank network built for this test, with a fundamental and a contagious default.

    Banks A=0, B=1, C=2, D=3. Interbank debts: A owes B 10 and C 10; B owes A 4 and C 8; C owes D 6;
    D owes A 4. External (outside) creditors, paid pari passu: B 8, C 4, D 16. External assets
    e = (5, 12, 0, 15). So pbar = (20, 20, 10, 20).

    Round 0 (all pay in full): A has 5 + 4 + 4 = 13 < 20, defaults; B 12 + 10 = 22, C 0 + 10 + 8 = 18,
    D 15 + 6 = 21 are solvent. A pays what it has: p_A = 13.
    Round 1: B has 12 + 13/2 = 18.5 < 20, defaults; C has 6.5 + 8 = 14.5 >= 10. Solve for A and B:
      p_A = 5 + 4 + (4/20) p_B,  p_B = 12 + (10/20) p_A
      => p_A = 9 + 0.2 (12 + 0.5 p_A) = 11.4 + 0.1 p_A => p_A = 11.4 / 0.9 = 38/3, p_B = 12 + 19/3 = 55/3.
    Round 2: C has 0.5 * 38/3 + 0.4 * 55/3 = 19/3 + 22/3 = 41/3 >= 10, D has 21 >= 20: nothing changes.
    p* = (38/3, 55/3, 10, 20); recovery (19/30, 11/12, 1, 1).
    """
    debtor = [0, 0, 1, 1, 2, 3]
    creditor = [1, 2, 0, 2, 3, 0]
    amount = [10.0, 10.0, 4.0, 8.0, 6.0, 4.0]
    e, ext = [5.0, 12.0, 0.0, 15.0], [0.0, 8.0, 4.0, 16.0]

    fd = eisenberg_noe(4, debtor, creditor, amount, e, ext)
    np.testing.assert_allclose(fd.payments, [38 / 3, 55 / 3, 10.0, 20.0], rtol=1e-12)
    np.testing.assert_allclose(fd.recovery, [19 / 30, 11 / 12, 1.0, 1.0], rtol=1e-12)
    assert fd.defaulted.tolist() == [True, True, False, False]
    assert fd.default_order.tolist() == [0, 1, -1, -1]
    assert fd.iterations == 2

    fp = eisenberg_noe(4, debtor, creditor, amount, e, ext, method="fixed_point")
    np.testing.assert_allclose(fp.payments, fd.payments, rtol=1e-9)
    assert fp.defaulted.tolist() == [True, True, False, False]
    # Picard from pbar: iteration 0 gives A 13 (short), B min(20, 22) = 20; iteration 1 gives B 18.5.
    assert fp.default_order.tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize("method", ["fictitious_default", "fixed_point"])
def test_negative_external_assets_in_a_closed_ring_pay_nothing(method):
    """Two firms owe each other 10; firm 0 has e = -5, firm 1 has e = 0, no outside creditors.

    p0 = max(0, -5 + p1), p1 = max(0, p0) => p0 = max(0, p0 - 5) => p0 = 0 = p1. Fictitious default
    meets a singular defaulting set here (a closed ring with no leakage) and must still get it right.
    """
    result = eisenberg_noe(2, [0, 1], [1, 0], [10.0, 10.0], [-5.0, 0.0], method=method)
    np.testing.assert_array_equal(result.payments, [0.0, 0.0])
    np.testing.assert_array_equal(result.recovery, [0.0, 0.0])
    assert result.defaulted.all()


def test_fictitious_default_falls_back_on_the_fixed_point_if_a_subset_solve_gives_up(monkeypatch):
    """The safety net for exact ties: with every subset solve refused, the answer must not change."""
    args = (
        4,
        [0, 0, 1, 1, 2, 3],
        [1, 2, 0, 2, 3, 0],
        [10.0, 10.0, 4.0, 8.0, 6.0, 4.0],
        [5.0, 12.0, 0.0, 15.0],
    )
    expected = eisenberg_noe(*args, [0.0, 8.0, 4.0, 16.0])
    monkeypatch.setattr(clearing, "_solve", lambda system, rhs: None)
    result = eisenberg_noe(*args, [0.0, 8.0, 4.0, 16.0])
    np.testing.assert_allclose(result.payments, expected.payments, rtol=1e-9)
    np.testing.assert_array_equal(result.default_order, expected.default_order)


def test_parallel_loans_add_up_and_nodes_owing_nothing_recover_fully():
    """A loan of 10 split in two gives the same clearing; a node without debts has recovery 1."""
    whole = eisenberg_noe(3, [0], [1], [10.0], [4.0, 0.0, -3.0])
    split = eisenberg_noe(3, [0, 0], [1, 1], [6.0, 4.0], [4.0, 0.0, -3.0])
    np.testing.assert_array_equal(whole.payments, split.payments)
    np.testing.assert_array_equal(whole.payments, [4.0, 0.0, 0.0])
    np.testing.assert_array_equal(whole.recovery, [0.4, 1.0, 1.0])
    assert whole.defaulted.tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"debtor": [0], "creditor": [0]}, "owe itself"),
        ({"debtor": [0], "creditor": [3]}, "creditor"),
        ({"debtor": [0.0], "creditor": [1]}, "debtor"),
        ({"amount": [-1.0]}, "amount"),
        ({"amount": [1.0, 2.0]}, "equal length"),
        ({"external_assets": [1.0, 2.0]}, "external_assets"),
        ({"external_liabilities": [0.0, -1.0, 0.0]}, "external_liabilities"),
        ({"method": "newton"}, "method"),
    ],
)
def test_eisenberg_noe_rejects_bad_input_naming_the_field(kwargs, message):
    args = {
        "n": 3,
        "debtor": [0],
        "creditor": [1],
        "amount": [1.0],
        "external_assets": [0.0, 0.0, 0.0],
    } | kwargs
    with pytest.raises(ValueError, match=message):
        eisenberg_noe(**args)


# --- Eisenberg-Noe: properties on random networks ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(clearing_problems())
def test_both_methods_agree(problem):
    n, debtor, creditor, amount, e, ext = problem
    fd = eisenberg_noe(n, debtor, creditor, amount, e, ext)
    fp = eisenberg_noe(n, debtor, creditor, amount, e, ext, method="fixed_point")
    pbar = np.bincount(debtor, amount, minlength=n) + ext
    np.testing.assert_allclose(fd.payments, fp.payments, rtol=1e-9, atol=1e-9 * max(1.0, pbar.max()))


@settings(max_examples=300, deadline=None)
@given(clearing_problems(leak=False))
def test_both_methods_agree_without_outside_creditors(problem):
    """Pure interbank networks: closed rings of defaulters can occur, fictitious default must cope."""
    n, debtor, creditor, amount, e, _ = problem
    fd = eisenberg_noe(n, debtor, creditor, amount, e)
    fp = eisenberg_noe(n, debtor, creditor, amount, e, method="fixed_point", max_iter=1_000_000)
    pbar = np.bincount(debtor, amount, minlength=n)
    np.testing.assert_allclose(fd.payments, fp.payments, rtol=1e-9, atol=1e-9 * max(1.0, pbar.max()))


@settings(max_examples=300, deadline=None)
@given(clearing_problems())
@example(  # found by hypothesis: a payment 1 ulp above the total owed as this test sums it
    (
        7,
        np.array([4, 4, 4, 4, 4]),
        np.array([5, 5, 5, 6, 0]),
        np.array([2.22044605e-16, 2.22044605e-16, 2.22044605e-16, 2.05785686e00, 8.23909973e00]),
        np.array([-1.0, -1.0, -1.0, -1.0, 13.0, -1.0, -1.0]),
        np.array([0.0, 0.0, 0.0, 0.0, 2.57423915, 0.0, 0.0]),
    )
)
def test_payments_are_a_bounded_clearing_vector(problem):
    n, debtor, creditor, amount, e, ext = problem
    result = eisenberg_noe(n, debtor, creditor, amount, e, ext)
    pbar, phi = dense_map(dense_liabilities(n, debtor, creditor, amount), e, ext)
    p = result.payments
    scale = 1e-9 * max(1.0, pbar.max())
    assert np.all(p >= 0.0)
    assert np.all(p <= pbar + scale)  # the clearing sums each debtor's liabilities in its own order
    np.testing.assert_allclose(p, phi(p), rtol=0, atol=scale)
    np.testing.assert_allclose(result.recovery * pbar, p, rtol=1e-12, atol=scale)
    np.testing.assert_array_equal(result.defaulted, p < pbar * (1 - 1e-9))
    np.testing.assert_array_equal(result.defaulted, result.default_order >= 0)


@settings(max_examples=300, deadline=None)
@given(clearing_problems(), st.data())
def test_payments_do_not_fall_when_external_assets_rise(problem, data):
    n, debtor, creditor, amount, e, ext = problem
    bump = np.array(data.draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n)))
    before = eisenberg_noe(n, debtor, creditor, amount, e, ext).payments
    after = eisenberg_noe(n, debtor, creditor, amount, e + bump, ext).payments
    pbar = np.bincount(debtor, amount, minlength=n) + ext
    assert np.all(after >= before - 1e-9 * max(1.0, pbar.max()))


@settings(max_examples=300, deadline=None)
@given(clearing_problems())
def test_payments_are_the_greatest_clearing_vector(problem):
    """Picard iteration from pbar falls to the greatest clearing vector, from 0 it rises to the least."""
    n, debtor, creditor, amount, e, ext = problem
    p = eisenberg_noe(n, debtor, creditor, amount, e, ext).payments
    pbar, phi = dense_map(dense_liabilities(n, debtor, creditor, amount), e, ext)
    scale = 1e-9 * max(1.0, pbar.max())
    np.testing.assert_allclose(p, dense_fixed_point(phi, pbar, 1e-4 * scale), rtol=0, atol=scale)
    assert np.all(p >= dense_fixed_point(phi, np.zeros(n), 1e-4 * scale) - scale)


def test_large_sparse_network_clears_consistently():
    """5,000 nodes, 25,000 loans, most nodes in default: the large-set solver path must stay exact."""
    rng = np.random.default_rng(20250101)
    n, m = 5_000, 25_000
    debtor = rng.integers(0, n, m)
    creditor = (debtor + rng.integers(1, n, m)) % n
    amount = rng.lognormal(0.0, 1.0, m)
    owed, claims = np.bincount(debtor, amount, minlength=n), np.bincount(creditor, amount, minlength=n)
    ext = 0.5 * owed + rng.uniform(0.0, 1.0, n)
    e = owed + ext - claims + rng.normal(0.0, 1.0, n)  # many nodes within a whisker of insolvency
    fd = eisenberg_noe(n, debtor, creditor, amount, e, ext)
    fp = eisenberg_noe(n, debtor, creditor, amount, e, ext, method="fixed_point")
    pbar = owed + ext
    assert fd.defaulted.sum() > 1_000
    np.testing.assert_allclose(fd.payments, fp.payments, rtol=1e-9, atol=1e-9 * pbar.max())
    np.testing.assert_array_equal(fd.defaulted, fp.defaulted)


# --- DebtRank ---------------------------------------------------------------------------------------

# A ring: node 1 lent 5 to node 0, node 2 lent 5 to node 1, node 0 lent 5 to node 2; every equity is
# 10, so each creditor's impact weight on its debtor is W = Lambda = 5 / 10 = 0.5.
RING = {"n": 3, "debtor": [0, 1, 2], "creditor": [1, 2, 0], "amount": [5.0, 5.0, 5.0], "equity": [10.0] * 3}


def test_original_debtrank_passes_distress_on_only_once():
    """Battiston et al. (2012) on the ring, node 0 shocked by 0.5.

    Step 1: node 0 is distressed, h1 = 0.5 * 0.5 = 0.25. Step 2: h2 = 0.5 * 0.25 = 0.125. Step 3:
    node 2 passes 0.5 * 0.125 back to node 0, h0 = 0.5625; node 0 is inactive by then, so it stops.
    """
    h = debtrank(**RING, shocked=[0], shock=0.5)
    np.testing.assert_allclose(h, [0.5625, 0.25, 0.125], rtol=1e-15)


def test_linear_debtrank_lets_losses_reverberate():
    """Bardoscia et al. (2015) on the same ring: the loss goes round and round with gain 0.5^3 = 1/8,
    so h0 = 0.5 / (1 - 1/8) = 4/7, h1 = 0.5 h0 = 2/7, h2 = 0.5 h1 = 1/7."""
    h = debtrank(**RING, shocked=[0], shock=0.5, linear=True)
    np.testing.assert_allclose(h, [4 / 7, 2 / 7, 1 / 7], rtol=1e-11)


def test_linear_debtrank_below_saturation_is_the_leontief_inverse():
    """Below saturation h = sum_k Lambda^k h1 = (I - Lambda)^{-1} h1 when the spectral radius is < 1."""
    n = 5
    debtor = np.array([0, 1, 2, 3, 4, 0, 2, 1])
    creditor = np.array([1, 2, 3, 4, 0, 3, 0, 4])
    amount = np.array([3.0, 2.0, 4.0, 1.0, 2.5, 1.5, 2.0, 3.0])
    equity = np.array([9.0, 8.0, 10.0, 7.0, 12.0])
    h1 = np.array([0.15, 0.0, 0.15, 0.0, 0.0])  # nodes 0 and 2 lose 15 % of their equity
    leverage = dense_liabilities(n, debtor, creditor, amount).T / equity[:, None]  # Lambda_ij
    assert max(abs(np.linalg.eigvals(leverage))) < 1
    expected = np.linalg.solve(np.eye(n) - leverage, h1)
    assert expected.max() < 1  # nothing saturates
    h = debtrank(n, debtor, creditor, amount, equity, [0, 2], shock=0.15, linear=True)
    np.testing.assert_allclose(h, expected, rtol=1e-10)


# --- zero recovery (Gai-Kapadia) --------------------------------------------------------------------


@pytest.mark.parametrize("default_at_zero_equity", [True, False])
def test_zero_recovery_fails_node_by_node_in_waves(default_at_zero_equity):
    """Node 0 starts insolvent (equity -1). Node 1 holds 6 of its debt against equity 5: wave 1. Node 2
    holds 4 of node 1's debt against equity 4: a loss equal to equity, wave 2 only if that counts as
    default. Node 3 holds 3 of node 0's debt and 3 of node 2's against equity 7: loses 3, or 6 once
    node 2 fails, and survives either way."""
    debtor, creditor = np.array([0, 1, 0, 2]), np.array([1, 2, 3, 3])
    amount = np.array([6.0, 4.0, 3.0, 3.0])
    wave = zero_recovery(4, debtor, creditor, amount, np.array([-1.0, 5.0, 4.0, 7.0]), default_at_zero_equity)
    assert wave.tolist() == ([0, 1, 2, -1] if default_at_zero_equity else [0, 1, -1, -1])


def test_zero_recovery_with_nobody_insolvent_fails_nobody():
    wave = zero_recovery(2, np.array([0]), np.array([1]), np.array([100.0]), np.array([0.5, 0.5]))
    assert wave.tolist() == [-1, -1]


@settings(max_examples=300, deadline=None)
@given(edge_lists(amounts=st.integers(0, 10)), st.data())
def test_zero_recovery_is_the_gai_kapadia_cascade(network, data):
    """The shocked nodes start with zero equity (they fail in wave 0); the others with their capital.
    The failed set is the dense reference cascade's, and every node of wave k > 0 lost at least its
    equity to the nodes of waves below k, and less to those below k - 1."""
    n, debtor, creditor, amount = network
    capital = np.array(data.draw(st.lists(st.integers(1, 15), min_size=n, max_size=n)), dtype=float)
    shocked = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    wave = zero_recovery(n, debtor, creditor, amount, np.where(shocked, 0.0, capital))
    unchecked = zero_recovery_failed(n, debtor, creditor, amount, np.where(shocked, 0.0, capital))
    np.testing.assert_array_equal(unchecked, wave >= 0)  # the failed set without the checks or waves
    owed = dense_liabilities(n, debtor, creditor, amount)
    np.testing.assert_array_equal(wave >= 0, dense_zero_recovery_cascade(owed, capital, shocked))
    np.testing.assert_array_equal(wave == 0, shocked)
    for k in range(1, wave.max(initial=0) + 1):
        here = wave == k
        assert np.all((owed.T @ ((wave >= 0) & (wave < k)))[here] >= capital[here])
        assert np.all((owed.T @ ((wave >= 0) & (wave < k - 1)))[here] < capital[here])


def test_zero_recovery_rejects_bad_input_naming_the_field():
    with pytest.raises(ValueError, match="equity"):
        zero_recovery(2, np.array([0]), np.array([1]), np.array([1.0]), np.array([1.0]))


@settings(max_examples=300, deadline=None)
@given(edge_lists(amounts=st.integers(0, 10)), st.data())
def test_threshold_debtrank_is_the_gai_kapadia_cascade(network, data):
    """With distress passed on only by wiped-out nodes, DebtRank defaults exactly the nodes that the
    zero-recovery cascade does with a loss equal to equity counting as default. Integer amounts and
    equities make exact ties common."""
    n, debtor, creditor, amount = network
    equity = np.array(data.draw(st.lists(st.integers(1, 15), min_size=n, max_size=n)), dtype=float)
    shocked = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    h = debtrank(n, debtor, creditor, amount, equity, shocked, threshold=True)
    owed = dense_liabilities(n, debtor, creditor, amount)
    defaulted = dense_zero_recovery_cascade(owed, equity, shocked)
    np.testing.assert_array_equal(h >= 1.0, defaulted)
    # The survivors' relative loss is their exposure to the defaulted, over their equity.
    loss = owed.T @ defaulted / equity
    np.testing.assert_allclose(h[~defaulted], loss[~defaulted], rtol=1e-12)


def test_systemic_importance_of_the_ring():
    """Node j defaults (h_j = 1) on the ring with the original rule: its creditor loses 0.5, that
    creditor's creditor 0.25, and the loss coming back to j is not counted. With equal equities the
    weights are 1/3, so R_j = (0.5 + 0.25) / 3 = 0.25 for every node."""
    np.testing.assert_allclose(systemic_importance(**RING), [0.25] * 3, rtol=1e-15)


@pytest.mark.parametrize("rule", [{}, {"linear": True}, {"threshold": True}])
def test_systemic_importance_matches_one_shock_at_a_time(rule):
    """The batched computation (300 nodes > one batch of 256) equals single-node DebtRank runs."""
    rng = np.random.default_rng(7)
    n, m = 300, 1_200
    debtor = rng.integers(0, n, m)
    creditor = (debtor + rng.integers(1, n, m)) % n
    amount = rng.uniform(0.0, 1.0, m)
    equity = np.bincount(creditor, amount, minlength=n) * rng.uniform(0.3, 1.5, n) + 0.1
    importance = systemic_importance(n, debtor, creditor, amount, equity, **rule)
    weight = equity / equity.sum()
    for j in [0, 1, 100, 255, 256, 299]:
        h = debtrank(n, debtor, creditor, amount, equity, [j], **rule)
        assert h[j] == 1.0
        assert importance[j] == pytest.approx(weight @ h - weight[j], rel=1e-12, abs=1e-15)


def test_debtrank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at most one"):
        debtrank(**RING, shocked=[0], linear=True, threshold=True)
    with pytest.raises(ValueError, match="shock"):
        debtrank(**RING, shocked=[0], shock=1.5)
    with pytest.raises(ValueError, match="equity"):
        debtrank(**(RING | {"equity": [10.0, 0.0, 10.0]}), shocked=[0])
    with pytest.raises(ValueError, match="shocked"):
        debtrank(**RING, shocked=[3])


def test_a_trade_of_less_than_one_unit_does_not_re_mark_the_generation() -> None:
    """When every bid sits far below the reserves the bisection can still fill ~1e-100 units; such a
    phantom trade is no price discovery and leaves the mark where it was (issue 16 part 2 finding)."""
    from core.secondary import Clearing, Marks

    marks = Marks(3, half_life_months=6.0)
    marks.ratio[:] = [0.9, 0.8, 0.7]
    price = np.array([10.0, 20.0, 30.0])
    clearing = Clearing(
        price=price,
        sold=np.array([1e-100, 0.999, 5.0]),
        offered=np.array([10.0, 10.0, 10.0]),
        filled=np.zeros(0),
        bought=np.zeros((0, 3)),
        driver=np.full(3, -1),
    )
    marks.after_clearing(clearing, fundamental=np.array([100.0, 100.0, 100.0]))
    assert marks.ratio.tolist() == [0.9, 0.8, 0.3]


def test_dust_filled_far_below_the_reserve_leaves_the_mark_and_a_trade_of_whole_units_sets_it() -> None:
    """100 units offered at a reserve of 100 (fundamental value 500, mark 0.9). A buyer with a median
    valuation of 1 (dispersion 0.3, budget 1e6) wants, at 100, 1e4 x Phi(ln(1 / 100) / 0.3) ~ 2e-49
    units: the clearing "sells" that at the reserve, and the mark stays at 0.9. A buyer with a median of
    200 takes all 100 units at the price p where (1e6 / p) Phi(ln(200 / p) / 0.3) = 100, and the mark
    becomes p / 500 (``MIN_MARKING_UNITS``: at least one whole unit traded)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    from core.secondary import MIN_MARKING_UNITS, BuyerBook, Marks, Offers, clear

    assert MIN_MARKING_UNITS == 1.0
    offers = Offers(*(np.array([v]) for v in (0, 100.0, 100.0, 1, 0, 2)))
    fundamental = np.array([500.0])

    def book(median: float) -> BuyerBook:
        return BuyerBook(
            np.array([[median]]), np.array([0.3]), np.array([[True]]), np.array([1e6]), np.array([1e6])
        )

    marks = Marks(1, half_life_months=6.0)
    marks.ratio[:] = 0.9
    dust = clear(offers, book(1.0), 1)
    assert 0.0 < dust.sold[0] < 1e-40 and dust.price[0] == 100.0
    assert dust.sold[0] == pytest.approx(1e4 * norm.cdf(np.log(1 / 100) / 0.3), rel=1e-6)
    marks.after_clearing(dust, fundamental)
    assert marks.ratio[0] == 0.9

    trade = clear(offers, book(200.0), 1)
    price = brentq(lambda p: 1e6 / p * norm.cdf(np.log(200 / p) / 0.3) - 100.0, 100.0, 2000.0, xtol=1e-12)
    assert trade.sold[0] == pytest.approx(100.0) and trade.price[0] == pytest.approx(price, rel=1e-9)
    marks.after_clearing(trade, fundamental)
    assert marks.ratio[0] == pytest.approx(price / 500.0, rel=1e-9)
