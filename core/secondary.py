"""The GPU secondary market: forced and voluntary sales cleared against buyers' demand curves.

Each hardware buyer values a GPU at the present value of its expected margins (its own hurdle rate and
deflation view), spread across its desks (log-normal with dispersion sigma), so it buys
``min(capacity, budget / p) * P(valuation >= p)`` units at price p, and nothing of a generation whose
racks it cannot power or cool. Sellers post units with a reserve price (hurried sellers accept down to
a scrap floor). Every generation clears at the highest price where demand meets the supply offered at
or below that price; what is not sold carries over. All generations clear at once, by bisection on
whole arrays, so the order of sellers and buyers never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

BISECTION_STEPS = 60
# a clearing re-marks a generation only when at least one whole unit traded: when every bid sits far
# below the reserves the bisection can still "fill" ~1e-100 units, which is no price discovery
MIN_MARKING_UNITS = 1.0


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values in ``keys`` starts (``np.r_[True, keys[1:] != keys[:-1]]`` for a
    non-empty array, without ``np.r_``'s overhead; empty for an empty one)."""
    out = np.empty(keys.size, dtype=bool)
    if keys.size:
        out[0] = True
        np.not_equal(keys[1:], keys[:-1], out=out[1:])
    return out


def largest_by_group(
    n_groups: int, group: np.ndarray, amount: np.ndarray, member: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n_groups`` groups, the member with the largest total ``amount`` in it (the amounts
    of a member listed more than once in a group are summed; ties: the lowest member id; -1 for an
    empty group) and that total (-inf for an empty group). Members are ids >= 0."""
    if group.size == 0:
        return np.full(n_groups, -1, dtype=np.int64), np.full(n_groups, -np.inf)
    lowest, highest = int(member.min()), int(member.max())
    if lowest == highest:  # one member (as one defaulter's creditors): it leads every group it is in
        present = np.bincount(group, minlength=n_groups) > 0
        total = np.bincount(group, weights=amount, minlength=n_groups)
        return np.where(present, lowest, -1).astype(np.int64, copy=False), np.where(present, total, -np.inf)
    out = np.full(n_groups, -1, dtype=np.int64)
    largest = np.full(n_groups, -np.inf)
    stride = highest + 1
    pairs, total = group.astype(np.int64, copy=False) * stride + member, amount
    if (pairs[1:] <= pairs[:-1]).any():  # not already distinct and in order: sum each pair's amounts
        pairs, which = np.unique(pairs, return_inverse=True)
        total = np.bincount(which, weights=amount)
        group, member = pairs // stride, pairs % stride
    # rows now run in order of group, then member: a group's first row with its largest total has the
    # lowest member among those tied
    np.maximum.at(largest, group, total)
    top = (total == largest[group]).nonzero()[0]
    first = top[run_starts(group[top])]
    out[group[first]] = member[first]
    return out, largest


def price_driver(offers: Offers, filled: np.ndarray, n_generations: int) -> np.ndarray:
    """Per generation, the defaulted borrower whose repossessed units sold most in this clearing (ties:
    the lowest id; -1 if none sold). Only repossessed lots drive the cause tree: a curing borrower's
    sale is not a default."""
    forced = (offers.lot >= 0) & (filled > 0)
    driver, _ = largest_by_group(
        n_generations, offers.generation[forced], filled[forced], offers.source[forced]
    )
    return driver


@dataclass
class Offers:
    """Units posted for sale this round (one row per lot or per curing borrower and generation)."""

    generation: np.ndarray
    units: np.ndarray
    reserve: np.ndarray  # lowest price accepted, USD per GPU
    seller: np.ndarray  # agent index of the seller
    lot: np.ndarray  # lot index, or -1 for a borrower's own sale
    source: np.ndarray  # the borrower whose GPUs these are (for the cause tree)

    @classmethod
    def concat(cls, parts: list[Offers]) -> Offers:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("generation", "units", "reserve", "seller", "lot", "source")
            )
        )

    def __len__(self) -> int:
        return self.units.size


@dataclass
class Clearing:
    price: np.ndarray  # clearing price by generation (NaN where nothing was offered)
    sold: np.ndarray  # units sold by generation
    offered: np.ndarray  # units offered by generation
    filled: np.ndarray  # units sold per offer
    bought: np.ndarray  # units bought per buyer and generation [K, G]
    driver: np.ndarray  # by generation: the defaulted borrower whose repossessed units sold most (-1 none)


@dataclass
class BuyerBook:
    """Buyers' demand parameters for this month (rows = buyers)."""

    valuation: np.ndarray  # [K, G] median value per GPU
    dispersion: np.ndarray  # [K]
    eligible: np.ndarray  # [K, G] bool: facilities can host this generation
    budget: np.ndarray  # [K] USD left this month
    capacity: np.ndarray  # [K] GPUs it can still install this month

    def decide(self) -> None:
        """Work out anything deferred (nothing here: see ``DeferredBuyerBook``)."""


class DeferredBuyerBook(BuyerBook):
    """A month's book whose valuations and eligibility are worked out when first read: most months
    sell nothing, and the buyers' present values are among the month's largest costs. Its inputs are
    fixed when it is made; whoever moves the world within the month (a shock) calls ``decide`` first,
    so it is the same book as one worked out at once."""

    def __init__(
        self,
        work_out: Callable[[], tuple[np.ndarray, np.ndarray]],
        dispersion: np.ndarray,
        budget: np.ndarray,
        capacity: np.ndarray,
    ) -> None:
        self._work_out: Callable[[], tuple[np.ndarray, np.ndarray]] | None = work_out
        self._decided: tuple[np.ndarray, np.ndarray] | None = None
        self.dispersion, self.budget, self.capacity = dispersion, budget, capacity

    def decide(self) -> None:
        if self._work_out is not None:
            self._decided, self._work_out = self._work_out(), None

    @property
    def valuation(self) -> np.ndarray:  # type: ignore[override]
        self.decide()
        return self._decided[0]

    @property
    def eligible(self) -> np.ndarray:  # type: ignore[override]
        self.decide()
        return self._decided[1]


def _demand_curve(book: BuyerBook, budget_share: np.ndarray):
    """Units each buyer wants of each generation at a price [G], as [K, G]: a curve with what does not
    depend on the price worked out once (the bisection calls it 60 times per clearing)."""
    budget = book.budget[:, None] * budget_share
    capacity = book.capacity[:, None] * budget_share
    log_value = np.log(np.maximum(book.valuation, 1e-12))
    dispersion = book.dispersion[:, None]
    eligible = book.eligible

    def curve(price: np.ndarray) -> np.ndarray:
        p = np.maximum(price, 1e-9)[None, :]
        with np.errstate(divide="ignore"):
            willing = ndtr((log_value - np.log(p)) / dispersion)
        return eligible * np.minimum(capacity, budget / p) * willing

    return curve


def _supply_curve(gen: np.ndarray, units: np.ndarray, reserve: np.ndarray, g_count: int):
    """Units offered at or below ``price`` [G], per generation: the bincount of ``units * ok`` over all
    offers, with ``ok = reserve <= price * (1 + 1e-12)``. A generation whose offers are all in (or all
    out) at this price gets its precomputed total (or 0.0) without a pass over the offers: the same
    sums, since multiplying by True keeps a number and adding 0.0 terms to a bin changes nothing. Only
    generations with offers on both sides are summed again, over their own offers in offer order."""
    total = np.bincount(gen, weights=units, minlength=g_count)
    lowest = np.full(g_count, np.inf)
    np.minimum.at(lowest, gen, reserve)  # NaN reserves propagate: such generations are always summed
    highest = np.full(g_count, -np.inf)
    np.maximum.at(highest, gen, reserve)
    finite = np.bincount(gen, weights=~np.isfinite(units), minlength=g_count) == 0

    def supply(price: np.ndarray) -> np.ndarray:
        limit = price * (1 + 1e-12)  # indexed by generation: the same product as price[gen] * (1 + 1e-12)
        all_in = highest <= limit
        mixed = ~all_in & ~((lowest > limit) & finite)
        out = np.where(all_in, total, 0.0)
        if mixed.any():
            sub = np.flatnonzero(mixed[gen])
            ok = reserve[sub] <= limit[gen[sub]]
            out = np.where(mixed, np.bincount(gen[sub], weights=units[sub] * ok, minlength=g_count), out)
        return out

    return supply


def _bisect(lo: np.ndarray, hi: np.ndarray, excess_at_lo: np.ndarray, excess) -> np.ndarray:
    """``BISECTION_STEPS`` steps of ``mid = 0.5 * (lo + hi); lo = mid if excess(exp(mid)) > 0 else
    hi = mid`` for each column: the same midpoints and decisions, with far fewer calls of numpy.

    Each call of ``excess`` (prices [P, C] -> excess demand [P, C]) checks a guessed stretch of the
    path at once: the guess takes the root where a straight line through the excess at the two ends
    of the interval crosses zero, and walks the bisection as if every midpoint below it had excess
    demand. The guessed steps are kept up to and including the first wrong guess, whose point's
    decision is then known too; the path goes on from there. A guess only decides which points are
    computed, never a decision, so the result is the loop's whatever the guesses. The midpoints are
    worked out in Python floats, the same IEEE doubles and operations as numpy's."""
    n_columns = lo.size
    lo, hi, at_lo = lo.tolist(), hi.tolist(), excess_at_lo.tolist()
    at_hi = excess(np.exp(np.array([hi]))).ravel().tolist()
    steps, stretch = [0] * n_columns, [8] * n_columns
    while True:
        todo = [c for c in range(n_columns) if steps[c] < BISECTION_STEPS]
        if not todo:
            return np.array(lo)
        paths = {}
        for c in todo:
            length = min(stretch[c], BISECTION_STEPS - steps[c])
            paths[c] = _guessed_path(lo[c], hi[c], at_lo[c], at_hi[c], length)
        n_points = max(len(path) for path in paths.values())
        points = [[lo[c]] * n_points for c in range(n_columns)]  # columns already done: any price
        for c, path in paths.items():
            points[c][: len(path)] = [mid for mid, _ in path]
        values = excess(np.exp(np.array(points).T)).T.tolist()
        for c, path in paths.items():
            kept = 0
            for (mid, guess), value in zip(path, values[c], strict=False):  # padded
                kept += 1
                if value > 0:
                    lo[c], at_lo[c] = mid, value
                else:
                    hi[c], at_hi[c] = mid, value
                if (value > 0) != guess:
                    break
            steps[c] += kept
            stretch[c] = 2 * kept + 4  # a guess that held goes further next time


def _guessed_path(lo: float, hi: float, at_lo: float, at_hi: float, length: int) -> list[tuple[float, bool]]:
    """The next ``length`` midpoints of the bisection from [lo, hi] and the guessed decision at each:
    excess above zero below the root of the line through (lo, at_lo) and (hi, at_hi), and at a
    midpoint equal to an end (no room left) what was found there."""
    root = lo + (hi - lo) * (at_lo / (at_lo - at_hi)) if at_lo - at_hi > 0 else 0.5 * (lo + hi)
    path = []
    for _ in range(length):
        mid = 0.5 * (lo + hi)
        guess = mid == lo or (mid != hi and mid < root)
        path.append((mid, guess))
        if guess:
            lo = mid
        else:
            hi = mid
    return path


def _excess_demand(
    book: BuyerBook,
    share: np.ndarray,
    gen: np.ndarray,
    units: np.ndarray,
    reserve: np.ndarray,
    columns: np.ndarray,
):
    """``prices [P, C] -> excess demand [P, C]`` for the generations ``columns``, at many prices per
    call, equal to ``_demand_curve(...).sum(axis=0) - _supply_curve(...)`` at each price.

    The same operations on the same numbers, summed in the same order: supply adds the offers'
    ``units * (reserve <= limit)`` in offer order (``_supply_curve``'s precomputed totals are those
    sums); numpy sums the buyers' [K, G] demand over buyers one buyer after another when G > 1 (so
    does ``bincount``) and pairwise when G == 1 (so does a row sum of length K). With G > 1, buyer terms
    that are zero at every price (a buyer that cannot host the generation or puts no budget on it) are
    left out, which leaves every sum's value unchanged when every term is finite; where a term could be
    NaN or infinite (a NaN or infinite valuation, budget or capacity, a dispersion that is not
    positive) all terms are kept."""
    budget = book.budget[:, None] * share[:, columns]
    capacity = book.capacity[:, None] * share[:, columns]
    log_value = np.log(np.maximum(book.valuation[:, columns], 1e-12))
    dispersion = np.broadcast_to(book.dispersion[:, None], budget.shape)
    eligible = book.eligible[:, columns]
    finite = (  # every term finite at any price >= 1e-9
        np.isfinite(budget / 1e-9).all()
        and np.isfinite(capacity).all()
        and np.isfinite(log_value).all()
        and np.isfinite(dispersion).all()
        and (dispersion > 0).all()
    )
    pairwise = share.shape[1] == 1
    left_out = finite and not pairwise
    keep = eligible & (share[:, columns] != 0) if left_out else np.ones(budget.shape, bool)
    buyer, column = np.nonzero(keep)  # buyer-major: each column's terms in buyer order
    budget, capacity, log_value = budget[buyer, column], capacity[buyer, column], log_value[buyer, column]
    dispersion = dispersion[buyer, column]
    # the eligibility factor as numpy casts it (1.0 or 0.0); all ones once the ineligible are left out
    weight = None if left_out else eligible[buyer, column].astype(float)
    on_column = np.full(gen.max(initial=0) + 1, -1, dtype=np.int64)
    on_column[columns] = np.arange(columns.size)
    offer = np.flatnonzero(on_column[gen] >= 0) if gen.size else gen
    offer_column, offer_units, offer_reserve = on_column[gen[offer]], units[offer], reserve[offer]

    bins: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by number of prices: (demand, supply) bins

    def excess(price: np.ndarray) -> np.ndarray:
        n_points, n_columns = price.shape
        if n_points not in bins:
            first = (np.arange(n_points) * n_columns)[:, None]
            bins[n_points] = ((first + column).ravel(), (first + offer_column).ravel())
        demand_bins, supply_bins = bins[n_points]
        p = np.maximum(price, 1e-9)
        with np.errstate(divide="ignore"):  # [P, pairs] in row order, as the sums below need
            willing = ndtr((log_value - np.log(p).take(column, axis=1)) / dispersion)
        bought = np.minimum(capacity, budget / p.take(column, axis=1))
        terms = (bought if weight is None else weight * bought) * willing
        if pairwise:
            demand = terms.sum(axis=1)
        else:
            demand = np.bincount(demand_bins, weights=terms.ravel(), minlength=n_points * n_columns)
        ok = offer_reserve <= (price * (1 + 1e-12)).take(offer_column, axis=1)
        supply = np.bincount(supply_bins, weights=(offer_units * ok).ravel(), minlength=n_points * n_columns)
        return (demand - supply).reshape(n_points, n_columns)

    return excess


def clear(offers: Offers, book: BuyerBook, n_generations: int) -> Clearing:
    """Clear every generation at once. Decided from the posted offers only (decide, then act)."""
    g_count = n_generations
    gen = offers.generation
    offered = np.bincount(gen, weights=offers.units, minlength=g_count)
    # buyers split budget and capacity across generations in proportion to the value on offer
    value_on_offer = book.eligible * book.valuation * offered[None, :]
    totals = value_on_offer.sum(axis=1, keepdims=True)
    share = np.divide(value_on_offer, totals, out=np.zeros_like(value_on_offer), where=totals > 0)

    demand_at = _demand_curve(book, share)
    reserve, units = offers.reserve, offers.units

    supply = _supply_curve(gen, units, reserve, g_count)

    has_offer = offered > 0
    floor = np.full(g_count, np.inf)
    np.minimum.at(floor, gen, np.maximum(offers.reserve, 1e-6))
    floor = np.where(has_offer, floor, 1.0)
    top = np.where(book.eligible, book.valuation * np.exp(4 * book.dispersion[:, None]), 0.0).max(
        axis=0, initial=0.0
    )
    top = np.maximum(top, floor)
    lo, hi = np.log(floor), np.log(top)
    excess_at_floor = demand_at(floor).sum(axis=0) - supply(floor)
    # only generations with excess demand at the floor are priced by the bisection (the rest clear at
    # their floor, or have no offer and no price)
    bisected = np.flatnonzero(has_offer & (excess_at_floor > 0))
    if bisected.size:
        excess = _excess_demand(book, share, gen, units, reserve, bisected)
        lo[bisected] = _bisect(lo[bisected], hi[bisected], excess_at_floor[bisected], excess)
    price = np.where(excess_at_floor > 0, np.exp(lo), floor)
    wanted = demand_at(price)
    available = supply(price)
    sold = np.minimum(wanted.sum(axis=0), available)
    price = np.where(has_offer, price, np.nan)
    sold = np.where(has_offer, sold, 0.0)

    eligible_offer = offers.reserve <= np.nan_to_num(price)[gen] * (1 + 1e-12)
    fill_ratio = np.divide(sold, available, out=np.zeros(g_count), where=available > 0)
    filled = offers.units * eligible_offer * fill_ratio[gen]
    total_wanted = wanted.sum(axis=0)
    bought = wanted * np.divide(sold, total_wanted, out=np.zeros(g_count), where=total_wanted > 0)[None, :]

    driver = price_driver(offers, filled, g_count)
    return Clearing(price=price, sold=sold, offered=offered, filled=filled, bought=bought, driver=driver)


class Marks:
    """The secondary mark of each generation as a share of its fundamental value.

    A trade of at least ``MIN_MARKING_UNITS`` sets the mark to the clearing price; with no trade, the
    discount heals toward the fundamental with a half-life (the market forgets a fire sale only
    slowly)."""

    def __init__(self, n_generations: int, half_life_months: float) -> None:
        self.ratio = np.ones(n_generations)
        self.decay = 0.5 ** (1.0 / half_life_months)

    def after_clearing(self, clearing: Clearing, fundamental: np.ndarray) -> None:
        """Re-mark generations that traded at least one whole unit."""
        traded = clearing.sold >= MIN_MARKING_UNITS
        ratio = np.divide(
            np.nan_to_num(clearing.price), fundamental, out=np.ones_like(fundamental), where=fundamental > 0
        )
        self.ratio = np.where(traded, np.minimum(ratio, 1.0), self.ratio)

    def heal(self) -> None:
        self.ratio = 1.0 - (1.0 - self.ratio) * self.decay


# --- impact price: exponential (Cifuentes, Ferrucci & Shin 2005; Caccioli et al. 2014) or linear ----


def impact_factor(share_sold: np.ndarray, coefficient: float, form: str) -> np.ndarray:
    """The post-impact price as a share of the pre-impact one after selling ``share_sold`` of the
    outstanding units: ``exp(-coefficient x)`` (exponential) or ``max(1 - coefficient x, 0)`` (linear,
    Cont & Schaanning 2017: ``coefficient`` is 1 / market depth as a share of the units outstanding)."""
    if form == "exponential":
        return np.exp(-coefficient * share_sold)
    if form == "linear":
        return np.maximum(1.0 - coefficient * share_sold, 0.0)
    raise ValueError(f"price impact form must be 'linear' or 'exponential', got {form!r}")


def clear_impact(
    offers: Offers,
    book: BuyerBook,
    n_generations: int,
    mark_price: np.ndarray,
    outstanding: np.ndarray,
    coefficient: float,
    form: str = "exponential",
) -> Clearing:
    """Clear at an impact price: selling a share x of a generation's outstanding units moves its price
    from the current mark m to m ``impact_factor(x)``: m exp(-alpha x), or m (1 - x / depth) (linear).

    Cifuentes, Ferrucci & Shin (2005) and Caccioli, Shrestha, Moore & Farmer (2014) price an asset at
    exp(-alpha x) of its value, x being the share of it liquidated so far; because exp is multiplicative,
    applying the impact of each round's sales to the current mark gives the same price as applying the
    cumulative share to the fundamental value (not so for the linear form, which Cont & Schaanning apply
    round by round to the current price, as here). Offers with a reserve are taken lowest reserve first (a
    group of equal reserves all or none, so the order of sellers never matters) while the price after
    their sale still meets their reserve. The units go to the buyers who can host the generation, split
    equally (the impact curve stands for their demand, so budgets do not bind); a generation no buyer
    can host does not trade. ``outstanding`` is the number of units of each generation in the market.
    """
    g_count = n_generations
    gen = offers.generation
    offered = np.bincount(gen, weights=offers.units, minlength=g_count)
    hosts = book.eligible.sum(axis=0) if book.eligible.size else np.zeros(g_count)
    can_trade = (hosts > 0) & (outstanding > 0)
    filled = np.zeros(len(offers))
    if len(offers):
        order = np.lexsort((offers.reserve, gen))
        g_sorted, r_sorted = gen[order], offers.reserve[order]
        cum = np.cumsum(offers.units[order])
        new_gen = run_starts(g_sorted)
        gen_start = np.maximum.accumulate(np.where(new_gen, np.arange(order.size), 0))
        before_gen = np.where(gen_start > 0, cum[gen_start - 1], 0.0)
        cum_in_gen = cum - before_gen
        # cumulative units at the end of each group of equal (generation, reserve)
        last_of_group = np.r_[(g_sorted[1:] != g_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1]), True]
        group_end = np.minimum.accumulate(np.where(last_of_group, np.arange(order.size), order.size)[::-1])[
            ::-1
        ]
        share = np.divide(
            cum_in_gen[group_end],
            outstanding[g_sorted],
            out=np.zeros(order.size),
            where=outstanding[g_sorted] > 0,
        )
        price_after = mark_price[g_sorted] * impact_factor(share, coefficient, form)
        accept = can_trade[g_sorted] & (r_sorted <= price_after * (1 + 1e-12))
        # price falls and reserves rise along a generation, so the accepted offers are a prefix of it
        filled[order] = np.where(accept, offers.units[order], 0.0)
    sold = np.bincount(gen, weights=filled, minlength=g_count)
    has_offer = offered > 0
    x = np.divide(sold, outstanding, out=np.zeros(g_count), where=outstanding > 0)
    price = np.where(has_offer, mark_price * impact_factor(x, coefficient, form), np.nan)
    per_host = np.divide(sold, hosts, out=np.zeros(g_count), where=hosts > 0)
    bought = book.eligible * per_host[None, :]
    driver = price_driver(offers, filled, g_count)
    return Clearing(price=price, sold=sold, offered=offered, filled=filled, bought=bought, driver=driver)


def impact_price(price: np.ndarray, share_sold: np.ndarray, impact: np.ndarray, form: str) -> np.ndarray:
    """The price after selling ``share_sold`` of an asset's outstanding stock, for a price ``impact``
    of selling 5 % of it (the stress-test convention). ``linear``: p (1 - impact x / 0.05), floored
    at zero (Cont & Schaanning 2017, market depth D = 0.05 stock / impact); ``exponential``:
    p exp(-beta x) with beta = -ln(1 - impact) / 0.05 (Cifuentes, Ferrucci & Shin 2005)."""
    if form == "linear":
        return price * np.maximum(1.0 - impact * share_sold / 0.05, 0.0)
    if form == "exponential":
        return price * np.exp(np.log1p(-impact) / 0.05 * share_sold)
    raise ValueError(f"price impact form must be 'linear' or 'exponential', got {form!r}")
