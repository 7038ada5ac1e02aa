"""The dataset plan (export/build_dataset.py): graded and camera-delivered references, the saturation range."""
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


def test_camera_references_are_drawn_apart_from_the_rest_of_the_plan():
    plain, cameras = _plan(0.3), B.plan(SOURCES, SPLIT, 600, 40, seed=5, p_grade=0.3, p_camera=0.5)
    assert not any("camera" in c for c in plain)  # earlier datasets' plans are unchanged
    assert [{k: v for k, v in c.items() if k != "camera"} for c in cameras] == plain
    specs = [c["camera"] for c in cameras if "camera" in c]
    assert 0.4 < len(specs) / len(cameras) < 0.6
    assert {s["optics"] for s in specs} == {"soft", "sharp", "none"}
    assert all(B.CAMERA_NOISE_GAIN[0] <= s["noise_gain"] <= B.CAMERA_NOISE_GAIN[1] for s in specs)
    jpeg = [s["jpeg"] for s in specs]
    assert 0.15 < jpeg.count(0) / len(jpeg) < 0.35
    assert all(B.CAMERA_JPEG[0] <= q < B.CAMERA_JPEG[1] for q in jpeg if q)


def test_real_video_gets_no_camera():
    video = Source("video/bbb", "/nonexistent/bbb.mp4", "test", "none", kind="video")
    split = {"train": [video.name], "heldout": []}
    assert not any("camera" in c for c in B.plan([video], split, 40, 0, seed=5, p_camera=1.0))


def test_desaturation_stops_short_of_grey():
    factors = [o["factor"] for c in _plan(0.3) for o in c["ops"] if o["op"] == "saturation"]
    down = [f for f in factors if f < 1]
    assert len(down) >= 10 and len(factors) - len(down) >= 10
    assert min(down) >= B.DESATURATION_FACTORS[0] and max(down) <= B.DESATURATION_FACTORS[1]


def test_the_classic_plan_still_builds_the_committed_first_dataset():
    """``--generators classic`` must reproduce the plan recorded in the first dataset's manifest (but the
    saturation factors: their range was narrowed after it was built, see its ``revisions``)."""
    import gzip
    import json
    from pathlib import Path

    manifest = json.loads(gzip.decompress((Path(B.__file__).parent / "reports" / "dataset_manifest.json.gz").read_bytes()))
    sources = [Source(name, s["path"], s["package"], s["licence"], s["kind"]) for name, s in manifest["sources"].items()]
    weights = manifest["generator_weights"]
    counts = manifest["counts"]
    clips = B.plan(sources, manifest["splits"], counts["train"]["clips_planned"], counts["heldout"]["clips_planned"],
                   seed=manifest["seed"], p_clean=weights["p_clean"], p_light_encode=weights["p_light_encode"],
                   p_grade=weights.get("p_grade", 0.0), generators="classic")
    recorded = {c["clip_id"]: c for c in manifest["clips"]}
    assert len(recorded) > 600
    def comparable(ops: list[dict]) -> list[dict]:  # floats to 12 digits: numpy releases differ in the last bit
        return [{k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in o.items()
                 if k != "offset" and not (o["op"] == "saturation" and k == "factor")} for o in ops]

    for cid, clip in recorded.items():
        assert (clips[cid]["source"], comparable(clips[cid]["ops"])) == (clip["source"], comparable(clip["ops"])), cid


def test_the_broad_plan_uses_every_generator_and_tags_name_them():
    clips = B.plan(SOURCES, SPLIT, 1500, 40, seed=5)
    used = {B.generator_of(o) for c in clips for o in c["ops"]}
    assert used == {name for family in B.GENERATORS.values() for name in family}
    for family, held in B.HELDOUT_GENERATORS.items():
        assert set(held) < set(B.GENERATORS[family])  # the family keeps implementations to train on
    for c in clips:
        assert B.tag_generators(B.degradation_tag(c["ops"])) == {B.generator_of(o) for o in c["ops"]}
    light = [c["ops"][0]["encoder"] for c in clips if len(c["ops"]) == 1 and c["ops"][0]["op"] == "encode"
             and B.D.ladder_strength(c["ops"][0]["encoder"], c["ops"][0]["value"]) < B.D.BLOCKING_FROM]
    assert len(set(light)) >= 5  # high-quality encodes from several codecs, not only x264


def test_the_heldout_generator_plan_uses_only_those_one_at_a_time():
    clips = B.plan(SOURCES, SPLIT, 0, 400, seed=5, generators="heldout")
    held = {name for names in B.HELDOUT_GENERATORS.values() for name in names}
    used = [B.generator_of(o) for c in clips for o in c["ops"]]
    assert set(used) == held and all(len(c["ops"]) <= 1 for c in clips)


def test_video_scenes_start_anywhere_in_their_own_length():
    from pathlib import Path

    from export.references import video_frames

    demo = Path(B.__file__).resolve().parents[1] / "monitor" / "demo" / "demo.mp4"
    frames = video_frames(demo)
    source = Source("video/demo", str(demo), "test", "none", "video")
    starts = {B.scene_spec(source, variant, seed).start for variant in range(6) for seed in range(20)}
    assert frames > 100 and min(starts) >= 4 and max(starts) <= frames - B.CLIP_FRAMES - 6
    assert max(starts) > 132 - B.CLIP_FRAMES - 6  # not the first video's length


def test_the_artwork_wallpapers_are_a_source_set_of_their_own(tmp_path):
    """``--sources artwork`` finds only the rendered plasma wallpapers; the photo set (and so the split of
    every earlier dataset) does not change when they are on disk."""
    import numpy as np
    from PIL import Image

    from export.references import PLASMA_ARTWORK, PLASMA_PHOTOS, discover_sources, split_sources

    for name in (*PLASMA_PHOTOS, *PLASMA_ARTWORK[:5]):
        folder = tmp_path / "ext" / "usr" / "share" / "wallpapers" / name / "contents" / "images"
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "8x8.png")
    photos = [s for s in discover_sources(tmp_path) if s.name.startswith("plasma")]
    artwork = discover_sources(tmp_path, artwork=True)
    assert [s.name for s in photos] == [f"plasma/{n}" for n in PLASMA_PHOTOS]
    assert [s.name for s in artwork] == [f"plasma_art/{n}" for n in PLASMA_ARTWORK[:5]]
    assert split_sources(artwork)["heldout"]  # it has a held-out split of its own
