"""The dataset plan (export/build_dataset.py): graded references and the saturation range."""
from __future__ import annotations

from export import build_dataset as B
from export.references import Source

SOURCES = [Source(f"photo/{i}", f"/nonexistent/{i}.jpg", "test", "none") for i in range(8)]
SPLIT = {"train": [s.name for s in SOURCES[:6]], "heldout": [s.name for s in SOURCES[6:]]}


def _plan(p_grade: float) -> list[dict]:
    return B.plan(SOURCES, SPLIT, 600, 40, seed=5, p_grade=p_grade)


def _without_grades(clips: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "grade"} for c in clips]


def test_grades_are_drawn_apart_from_the_rest_of_the_plan():
    plain, graded = _plan(0.0), _plan(0.5)
    assert all(c["grade"] is None for c in plain)
    assert _without_grades(plain) == _without_grades(graded)  # grading moves nothing else
    kinds = [c["grade"]["kind"] for c in graded if c["grade"]]
    assert 0.4 < len(kinds) / len(graded) < 0.6
    assert 0.4 < kinds.count("mono") / len(kinds) < 0.6
    tints = [c["grade"] for c in graded if c["grade"] and c["grade"]["kind"] == "tint"]
    assert all(B.TINT_AMOUNT[0] <= t["amount"] <= B.TINT_AMOUNT[1] and 0 <= t["hue"] < 360 for t in tints)


def test_desaturation_stops_short_of_grey():
    factors = [o["factor"] for c in _plan(0.3) for o in c["ops"] if o["op"] == "saturation"]
    down = [f for f in factors if f < 1]
    assert len(down) >= 10 and len(factors) - len(down) >= 10
    assert min(down) >= B.DESATURATION_FACTORS[0] and max(down) <= B.DESATURATION_FACTORS[1]
