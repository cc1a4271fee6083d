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
        assert_close(fresh["summary"][key], value, key)


def assert_close(fresh, pinned, where: str) -> None:
    """Equal, with floats at any depth to 1e-9 relative (the last digits of a sum depend on the CPU's
    vector width in numpy's reductions; a real change in behaviour moves far more than that)."""
    if isinstance(pinned, dict):
        assert isinstance(fresh, dict) and sorted(fresh) == sorted(pinned), where
        for key, value in pinned.items():
            assert_close(fresh[key], value, f"{where}.{key}")
    elif isinstance(pinned, list):
        assert isinstance(fresh, list) and len(fresh) == len(pinned), where
        for i, (now, then) in enumerate(zip(fresh, pinned, strict=True)):
            assert_close(now, then, f"{where}[{i}]")
    elif isinstance(pinned, float):
        assert fresh == pytest.approx(pinned, rel=1e-9, nan_ok=True), where
    else:
        assert fresh == pinned, where
