"""Golden master (in the manner of ABIDES's regression tests): reference runs' outputs are pinned, so
any change in behaviour shows up here and has to be explained when the references are regenerated
(``python -m tests.golden.regenerate``)."""

from __future__ import annotations

import json

import pytest

from tests.golden.regenerate import FOLDER, REFERENCES, reference_run


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_run_is_unchanged(name):
    pinned = json.loads((FOLDER / f"{name}.json").read_text())
    fresh = json.loads(json.dumps(reference_run(**REFERENCES[name]), default=float))
    assert fresh["defaults"] == pinned["defaults"], "the defaults or their causes changed"
    assert len(fresh["steps"]) == len(pinned["steps"])
    for now, then in zip(fresh["steps"], pinned["steps"], strict=True):
        for column, value in then.items():
            if value is None or isinstance(value, bool):  # NaN is stored as null
                assert now[column] == value, (column, now["month"])
            else:
                assert now[column] == pytest.approx(value, rel=1e-9, abs=1e-12), (column, now["month"])
    for key, value in pinned["summary"].items():
        if isinstance(value, float):
            assert fresh["summary"][key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
        else:
            assert fresh["summary"][key] == value, key
