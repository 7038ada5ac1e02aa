"""Model card and evaluation bookkeeping: training stages, the per-source acceptance table, and the
choice of held-out references for the clean / CRF 46 check."""
from __future__ import annotations

import json

from export.evaluate import spread_over_sources
from export.model_card import _check_by_source, limitation_lines, training_stages


def _run(directory, records):
    directory.mkdir(parents=True)
    (directory / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def test_a_fine_tune_is_listed_after_the_run_it_started_from(tmp_path):
    first = _run(tmp_path / "runs" / "scratch", [{"epoch": 1}, {"epoch": 2}])
    second = _run(tmp_path / "runs" / "tuned", [{"epoch": 1, "init": "runs/scratch/weights.pt"}])
    stages = training_stages(second)
    assert [(d, len(log)) for d, log in stages] == [(first, 2), (second, 1)]
    assert training_stages(first) == [(first, [{"epoch": 1}, {"epoch": 2}])]


def test_a_fine_tune_whose_first_stage_is_gone_is_listed_alone(tmp_path):
    tuned = _run(tmp_path / "tuned", [{"epoch": 1, "init": str(tmp_path / "gone" / "weights.pt")}])
    assert [d for d, _ in training_stages(tuned)] == [tuned]
    assert training_stages(tmp_path / "missing") == []


def test_clean_check_takes_references_from_every_held_out_source_in_turn():
    clips = [{"split": "heldout", "source": src, "reference": f"refs/{src}_v{v}.mkv"}
             for src in ("b", "a", "c") for v in range(3 if src != "c" else 1)]
    clips += [{"split": "heldout", "source": "a", "reference": "refs/a_v0.mkv"},  # a reference used twice
              {"split": "train", "source": "t", "reference": "refs/t_v0.mkv"}]
    manifest = {"clips": clips}
    assert spread_over_sources(manifest, 4) == ["refs/a_v0.mkv", "refs/b_v0.mkv", "refs/c_v0.mkv", "refs/a_v1.mkv"]
    everything = spread_over_sources(manifest)
    assert len(everything) == 7 and len(set(everything)) == 7 and "refs/t_v0.mkv" not in everything


def test_acceptance_table_groups_by_source():
    def clip(ref, vmaf, clean, bad):
        return {"reference": ref, "crf46_vmaf": vmaf, "e": {"clean_aqs": clean, "crf46_aqs": bad}}
    check = {"clips": [clip("data/refs/mate_Aqua_v0.mkv", 40.0, 0.8, 0.2), clip("data/refs/mate_Aqua_v1.mkv", 50.0, 0.6, 0.4),
                       clip("data/refs/plasma_Grey_v0.mkv", 70.0, 0.9, 0.85)],
             "e": {}}
    lines = _check_by_source(check)
    assert "| mate_Aqua | 2 | 45.0 | 0.70 / 0.30 |" in lines
    assert "| plasma_Grey | 1 | 70.0 | 0.90 / 0.85 |" in lines


def test_a_run_that_names_its_own_weights_as_init_is_one_stage(tmp_path):
    run = _run(tmp_path / "runs" / "m", [{"epoch": 1, "init": "runs/m/weights.pt"}])
    assert [d for d, _ in training_stages(run)] == [run]


def test_notes_starting_with_a_dash_are_sub_items_of_the_note_before():
    assert limitation_lines(["Stage 2:", "- SROCC up;", "- AUC up.", "Peers."]) == [
        "- Stage 2:", "  - SROCC up;", "  - AUC up.", "- Peers."]


def test_camera_check_spans_the_training_ranges_and_every_optics_and_jpeg():
    from export.build_dataset import CAMERA_NOISE_GAIN
    from export.evaluate import camera_spec

    specs = [camera_spec(i) for i in range(11)]
    gains = [s["noise_gain"] for s in specs]
    assert min(gains) == CAMERA_NOISE_GAIN[0] and max(gains) == CAMERA_NOISE_GAIN[1]
    assert {s["optics"] for s in specs} == {"none", "soft", "sharp"}
    assert {s["jpeg"] for s in specs} == {0, 85, 92}
    assert len({s["seed"] for s in specs}) == 11


def test_camera_section_reports_each_engine():
    from export.model_card import camera_section
    from export.evaluate import camera_spec

    check = {"clips": [{"camera": camera_spec(i)} for i in range(3)],
             "e": {"aqs_mean": 0.9, "aqs_min": 0.8, "ge_0.85": 2, "clips": 3}}
    lines = camera_section(check)
    assert "| `e` | 0.900 (0.800) | 2/3 |" in lines
    assert camera_section(None) == []


def test_heads_comparison_lists_every_split_of_each_backbone(tmp_path):
    from export.model_card import heads_comparison

    assert heads_comparison(tmp_path) == []
    for name, srocc in (("b0", 0.8), ("lite0", 0.7)):
        run = _run(tmp_path / "compare_heads" / name, [
            {"epoch": 40, "train_windows": 100, "heldout_srocc": srocc, "heldout_mean_auc": 0.9,
             "more_heldout": {"data/v2/dataset/heldout": {"heldout_srocc": srocc - 0.1, "heldout_mean_auc": 0.85}}}])
        (run / "command.txt").write_text("python -m export.refit_heads --fresh-heads\n")
    lines = heads_comparison(tmp_path)
    assert "| backbone | training windows | first dataset held-out | `data/v2/dataset` held-out |" in lines
    rows = [line for line in lines if line.startswith("| EfficientNet")]
    assert rows[0].endswith("| 100 | 0.800 / 0.900 | 0.700 / 0.850 |") and "0.700 / 0.900" in rows[1]
    assert any("--fresh-heads" in line for line in lines)
