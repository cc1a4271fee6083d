"""Counterfactual attribution of defaults (issue 19): what a default did, counted rather than inferred.

The cause tree credits each default to the last straw. To count what a borrower's default did, the
run is repeated on the same seed (every subsystem draws the same numbers: ``core.streams``) with that
default neutralised: the borrower still leaves the market when it would, but its creditors are paid
in full from outside and its GPUs leave unsold (``model.cascade.settle_outside``), so its fire sale
and its clearing losses are gone. Against that run:

- *extra defaults*: borrowers and lenders that default in the run but not in the counterfactual;
- *brought forward*: those that default in both, earlier in the run (with both months);
- *delayed* and *only without it*: the reverse cases (a default can also help others, e.g. by
  leaving its tenants' demand to them; usually empty).

The price channel's own counterfactual (``price_channel_twin``, ``fire_sale_amplification``) lives here
too: every rerun of a run is a counterfactual of it, above the model it reruns.

Only borrower defaults are attributed (a lender's clearing losses run through the interbank clearing,
which is not neutralised), the first ``MAX_ATTRIBUTED`` in order of default, one run each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.config import canonical_dict
from core.ledger import Kind
from model.model import GPUCreditModel

MAX_ATTRIBUTED = 12  # borrower defaults attributed per run (each costs one counterfactual run)


def default_months(model: GPUCreditModel) -> dict[str, int]:
    """Every defaulted agent's name and month of default."""
    table = model.metrics.defaults_table()
    return dict(zip(table["name"], table["month"].astype(int), strict=True))


def counterfactual(model: GPUCreditModel, name: str) -> GPUCreditModel:
    """The same run, to the same month, with ``name``'s default neutralised."""
    config = model.config
    twin = GPUCreditModel(
        canonical_dict(config), seed=config.seed, months=int(model.time), neutralise=(name,)
    )
    twin.run()
    return twin


def compare(name: str, factual: dict[str, int], without: dict[str, int]) -> dict[str, Any]:
    """What ``name``'s default did: defaults of the run (``factual``) against the counterfactual
    (``without``), both as name -> month."""
    others = {k: m for k, m in factual.items() if k != name}
    extra = [{"name": k, "month": m} for k, m in others.items() if k not in without]
    forward = [
        {"name": k, "month": m, "month_without": without[k]}
        for k, m in others.items()
        if k in without and m < without[k]
    ]
    delayed = [
        {"name": k, "month": m, "month_without": without[k]}
        for k, m in others.items()
        if k in without and m > without[k]
    ]
    only_without = [{"name": k, "month": m} for k, m in without.items() if k != name and k not in factual]
    return {
        "name": name,
        "month": factual[name],
        "extra_defaults": extra,
        "brought_forward": forward,
        "delayed": delayed,
        "only_without_it": only_without,
    }


def counterfactual_attribution(model: GPUCreditModel, limit: int = MAX_ATTRIBUTED) -> dict[str, Any]:
    """For each of the run's first ``limit`` borrower defaults: its extra defaults and the defaults it
    brought forward, with months (see the module docstring)."""
    table = model.metrics.defaults_table()
    factual = default_months(model)
    kinds = model.ledger.kind[table["agent"].to_numpy(dtype=np.int64)] if len(table) else np.array([])
    borrowers = table[np.isin(kinds, (Kind.MINER, Kind.NEOCLOUD))]
    chosen = list(borrowers["name"][:limit])
    return {
        "borrower_defaults": len(borrowers),
        "attributed": len(chosen),
        "limit": limit,
        "defaults": [compare(name, factual, default_months(counterfactual(model, name))) for name in chosen],
    }


def price_channel_twin(model: GPUCreditModel) -> GPUCreditModel:
    """The same run with the price channel switched the other way, run to the same month.

    Common random numbers: the world draws four normals a month, the base rate one and tenants one
    uniform per borrower, each from its own stream (``core.streams``), whatever happens in the cascade, so the twin draws the same world (BTC, rents, regime, tenant
    draws) and differs only in what covenants see (``tests/test_mechanisms.py`` pins this)."""
    config = model.config
    twin = GPUCreditModel(
        canonical_dict(config),
        seed=config.seed,
        months=int(model.time),
        overrides={"cascade.price_channel": not config.cascade.price_channel},
    )
    twin.run()
    return twin


def fire_sale_amplification(model: GPUCreditModel, twin: GPUCreditModel) -> dict[str, Any]:
    """Defaults with the price channel on over defaults with it off, on the same seed (one run and its
    ``price_channel_twin``). The ratio is None when the run without the channel has no default."""
    on, off = (model, twin) if model.config.cascade.price_channel else (twin, model)
    defaults_on, defaults_off = int(on.ledger.defaulted.sum()), int(off.ledger.defaulted.sum())
    return {
        "defaults_price_channel_on": defaults_on,
        "defaults_price_channel_off": defaults_off,
        "ratio": defaults_on / defaults_off if defaults_off else None,
    }
