"""Training: losses fall on a real-pipeline batch, checkpoints resume, metrics are logged."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engines.architectures import build_model  # noqa: E402
from engines.contract import NUM_ARTIFACTS  # noqa: E402
from export.metrics import plcc, roc_auc, srocc  # noqa: E402
from engines.aqs import SHIPPED_CAPS, SHIPPED_DEAD_ZONE, aqs  # noqa: E402
from export.train import LABELS, aqs_torch, losses, lr_at, main  # noqa: E402


def write_split(directory, windows, seed):
    rng = np.random.default_rng(seed)
    n = len(windows)
    presence = (rng.random((n, NUM_ARTIFACTS)) < 0.3).astype(np.float32)
    presence[0] = 0
    presence[1] = 1
    arrays = {
        "windows": windows,
        "quality": rng.uniform(0.2, 1.0, n).astype(np.float32),
        "presence": presence,
        "intensity": (presence * rng.uniform(0.1, 1.0, (n, NUM_ARTIFACTS))).astype(np.float32),
        "clip_id": np.arange(n), "source": np.array(["astronaut"] * n), "degradation": np.array(["none"] * n),
    }
    directory.mkdir(parents=True)
    np.savez(directory / "shard_000.npz", **arrays)
    assert set(LABELS) <= set(arrays)


def test_loss_decreases_on_a_real_batch(sampled_windows):
    torch.manual_seed(0)
    model = build_model("aqs_mnv3_small").train()
    x = torch.from_numpy(sampled_windows(4))
    quality = torch.tensor([0.9, 0.3, 0.6, 0.5])
    presence = torch.zeros(4, NUM_ARTIFACTS)
    presence[1, 0] = presence[2, 3] = 1
    intensity = presence * 0.7
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    history = []
    for _ in range(3):
        parts = losses(model(x), quality, presence, intensity)
        optimizer.zero_grad()
        parts["total"].backward()
        optimizer.step()
        history.append(parts["total"].item())
    assert history[-1] < history[0], history


def test_train_checkpoints_and_resumes(tmp_path, sampled_windows):
    windows = sampled_windows(6)
    write_split(tmp_path / "data" / "train", windows[:4], 0)
    write_split(tmp_path / "data" / "heldout", windows[4:], 1)
    common = ["--model", "aqs_mnv3_small", "--data", str(tmp_path / "data"), "--runs", str(tmp_path / "runs"),
              "--batch-size", "2", "--max-steps", "2", "--threads", "2"]
    assert main([*common, "--epochs", "1"]) == 0
    run = tmp_path / "runs" / "aqs_mnv3_small"
    first = torch.load(run / "weights.pt", weights_only=True)
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    for record in log:
        assert record["steps"] == 2 and record["train_windows"] == 4 and record["heldout_windows"] == 2
        assert np.isfinite(record["train_loss_total"])
        assert set(record["heldout_auc"]) and "heldout_srocc" in record and "heldout_mean_auc" in record
    second = torch.load(run / "weights.pt", weights_only=True)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and "optimizer" in state


def test_schedule_and_metrics():
    assert lr_at(0.0, 1.0, 0.1) == pytest.approx(0.02)
    assert lr_at(0.1, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0, 0.1) == pytest.approx(0.02)
    assert all(lr_at(p / 10, 1.0, 0.1) >= lr_at((p + 1) / 10, 1.0, 0.1) for p in range(1, 10))
    a = np.array([0.1, 0.4, 0.35, 0.8])
    assert srocc(a, a * 2) == pytest.approx(1.0) and plcc(a, a) == pytest.approx(1.0)
    assert roc_auc(a, np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(a, np.array([1, 1, 1, 1])) != roc_auc(a, np.array([1, 1, 1, 1]))  # nan


def test_fragment_crops_are_aligned_mosaic_pieces_and_train(sampled_windows):
    from engines.contract import FRAGMENT_SIZE
    from export.train import crop_fragments

    windows = sampled_windows(3)
    crops = crop_fragments(windows, 4, np.random.default_rng(0))
    assert crops.shape == (3, 7, 3, 4 * FRAGMENT_SIZE, 4 * FRAGMENT_SIZE)
    for window, crop in zip(windows, crops):
        hits = [(r, c) for r in range(0, 224 - 127, FRAGMENT_SIZE) for c in range(0, 224 - 127, FRAGMENT_SIZE)
                if np.array_equal(window[..., r:r + 128, c:c + 128], crop)]
        assert hits, "each crop is a fragment-aligned piece of its own window"
    model = build_model("aqs_mnv3_small").eval()
    with torch.no_grad():
        small = model(torch.from_numpy(crops))
        full = model(torch.from_numpy(windows))
    assert [tuple(t.shape) for t in small] == [tuple(t.shape) for t in full] == [(3,), (3, 10), (3, 10)]


def test_crop_epochs_then_whole_mosaic(tmp_path, sampled_windows):
    windows = sampled_windows(6)
    write_split(tmp_path / "data" / "train", windows[:4], 0)
    write_split(tmp_path / "data" / "heldout", windows[4:], 1)
    assert main(["--model", "aqs_mnv3_small", "--data", str(tmp_path / "data"), "--runs", str(tmp_path / "runs"),
                 "--batch-size", "2", "--max-steps", "1", "--threads", "2", "--epochs", "2",
                 "--crop-fragments", "4", "--full-epochs", "1"]) == 0
    log = [json.loads(line) for line in (tmp_path / "runs" / "aqs_mnv3_small" / "log.jsonl").read_text().splitlines()]
    assert [r["crop_fragments"] for r in log] == [4, 7]


def test_aqs_loss_uses_the_daemons_formula():
    rng = np.random.default_rng(3)
    q, p, s = rng.random(64), rng.random((64, NUM_ARTIFACTS)), rng.random((64, NUM_ARTIFACTS))
    for caps, dead_zone in ((SHIPPED_CAPS, SHIPPED_DEAD_ZONE), (rng.random(NUM_ARTIFACTS), 0.0), (rng.random(NUM_ARTIFACTS), 0.4)):
        got = aqs_torch(*(torch.from_numpy(a) for a in (q, p, s)), caps=caps, dead_zone=dead_zone).numpy()
        np.testing.assert_allclose(got, aqs(q, p, s, caps, dead_zone), rtol=1e-5, atol=1e-6)


def test_aqs_loss_penalises_false_alarms_on_clean_windows():
    quality, presence, intensity = torch.ones(2), torch.zeros(2, NUM_ARTIFACTS), torch.zeros(2, NUM_ARTIFACTS)
    quiet = (torch.ones(2), torch.full((2, NUM_ARTIFACTS), -6.0), torch.full((2, NUM_ARTIFACTS), 0.6))
    # strong false evidence (p 0.73, intensity 0.9): beyond the dead zone, so it lowers AQS
    alarmed = (torch.ones(2), torch.full((2, NUM_ARTIFACTS), 1.0), torch.full((2, NUM_ARTIFACTS), 0.9))
    assert losses(quiet, quality, presence, intensity, aqs_weight=1.0)["aqs"] < 0.02
    assert losses(alarmed, quality, presence, intensity, aqs_weight=1.0)["aqs"] > 0.15
    off = losses(alarmed, quality, presence, intensity)
    assert off["total"] == pytest.approx(float(2 * off["quality"] + off["presence"] + 0.5 * off["intensity"]))
    on = losses(alarmed, quality, presence, intensity, aqs_weight=1.0)
    assert on["total"] == pytest.approx(float(off["total"] + on["aqs"]))


def test_train_starts_from_init_weights(tmp_path, sampled_windows):
    windows = sampled_windows(4)
    write_split(tmp_path / "data" / "train", windows[:2], 0)
    write_split(tmp_path / "data" / "heldout", windows[2:], 1)
    torch.manual_seed(123)
    start = build_model("aqs_mnv3_small")
    with torch.no_grad():
        start.quality_head.bias.fill_(3.0)
    torch.save(start.state_dict(), tmp_path / "init.pt")
    common = ["--model", "aqs_mnv3_small", "--data", str(tmp_path / "data"), "--batch-size", "2", "--max-steps", "1",
              "--threads", "2", "--epochs", "1", "--lr", "1e-9"]
    assert main([*common, "--runs", str(tmp_path / "a"), "--init", str(tmp_path / "init.pt")]) == 0
    assert main([*common, "--runs", str(tmp_path / "b")]) == 0
    tuned = torch.load(tmp_path / "a" / "aqs_mnv3_small" / "weights.pt", weights_only=True)
    fresh = torch.load(tmp_path / "b" / "aqs_mnv3_small" / "weights.pt", weights_only=True)
    assert float(tuned["quality_head.bias"]) == pytest.approx(3.0, abs=1e-3)
    assert float(fresh["quality_head.bias"]) != pytest.approx(3.0, abs=0.5)
    log = json.loads((tmp_path / "a" / "aqs_mnv3_small" / "log.jsonl").read_text().splitlines()[0])
    assert "heldout_aqs_srocc" in log and "heldout_clean_aqs" in log


def test_freeze_norm_keeps_running_statistics_while_weights_train(tmp_path, sampled_windows):
    windows = sampled_windows(4)
    write_split(tmp_path / "data" / "train", windows[:2], 0)
    write_split(tmp_path / "data" / "heldout", windows[2:], 1)
    torch.manual_seed(7)
    torch.save(build_model("aqs_mnv3_small").state_dict(), tmp_path / "init.pt")
    start = torch.load(tmp_path / "init.pt", weights_only=True)
    common = ["--model", "aqs_mnv3_small", "--data", str(tmp_path / "data"), "--batch-size", "2", "--max-steps", "1",
              "--threads", "2", "--epochs", "1", "--lr", "1e-3", "--warmup", "0", "--init", str(tmp_path / "init.pt")]
    runs = {}
    for name, extra in (("frozen", ["--freeze-norm"]), ("free", [])):
        assert main([*common, *extra, "--runs", str(tmp_path / name)]) == 0
        runs[name] = torch.load(tmp_path / name / "aqs_mnv3_small" / "weights.pt", weights_only=True)
    statistics = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert statistics
    assert all(torch.equal(runs["frozen"][k], start[k]) for k in statistics)
    assert any(not torch.equal(runs["free"][k], start[k]) for k in statistics)
    norm_scales = [k[: -len("running_mean")] + "weight" for k in statistics if k.endswith("running_mean")]
    assert any(not torch.equal(runs["frozen"][k], start[k]) for k in norm_scales), "the norms' scales still train"
    log = json.loads((tmp_path / "frozen" / "aqs_mnv3_small" / "log.jsonl").read_text().splitlines()[0])
    assert log["freeze_norm"] is True


def test_refit_heads_trains_only_the_trunk_and_heads(tmp_path, sampled_windows):
    from export.refit_heads import main as refit

    windows = sampled_windows(6)
    write_split(tmp_path / "data" / "train", windows[:4], 0)
    write_split(tmp_path / "data" / "heldout", windows[4:], 1)
    torch.manual_seed(7)
    torch.save(build_model("aqs_mnv3_small").state_dict(), tmp_path / "init.pt")
    assert refit(["--model", "aqs_mnv3_small", "--init", str(tmp_path / "init.pt"), "--train", str(tmp_path / "data" / "train"),
                  "--heldout", str(tmp_path / "data" / "heldout"), "--out", str(tmp_path / "out"), "--epochs", "3",
                  "--batch-size", "2", "--log-every", "2", "--threads", "2"]) == 0
    before = torch.load(tmp_path / "init.pt", weights_only=True)
    after = torch.load(tmp_path / "out" / "weights.pt", weights_only=True)
    trained = ("trunk.", "quality_head.", "artifact_head.", "intensity_head.")
    for key, value in before.items():
        if key.startswith(trained):
            continue
        assert torch.equal(value, after[key]), key  # backbone and temporal branch untouched, BN statistics too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(trained))
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [2, 3] and log[0]["init"] == str(tmp_path / "init.pt")
    assert log[0]["train_windows"] == 4 and "heldout_srocc" in log[0] and log[0]["frozen"]

    cached = ["--model", "aqs_mnv3_small", "--init", str(tmp_path / "init.pt"), "--train", str(tmp_path / "data" / "train"),
              "--heldout", str(tmp_path / "data" / "heldout"), "--epochs", "3", "--batch-size", "2", "--threads", "2",
              "--cache-dir", str(tmp_path / "cache")]
    assert refit([*cached, "--out", str(tmp_path / "c1")]) == 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # train and held-out features, kept
    assert refit([*cached, "--out", str(tmp_path / "c2")]) == 0  # from the cache: the same result
    first, second = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("c1", "c2"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_refit_fine_tunes_shipped_weights_on_the_windows_chosen(tmp_path, sampled_windows):
    """From a shipped fp16 safetensors file: the statistics' scaling the trunk was trained with is kept;
    --calibration leaves out every 10th shard and --exclude-generators those generators' windows."""
    from export.export_onnx import save_fp16_safetensors
    from export.refit_heads import main as refit

    windows = sampled_windows(6)
    train, heldout = tmp_path / "data" / "train", tmp_path / "data" / "heldout"
    write_split(train, windows[:4], 0)
    with np.load(train / "shard_000.npz") as z:
        arrays = dict(z)
    np.savez(train / "shard_009.npz", **arrays)  # a calibration shard
    np.savez(train / "shard_001.npz", **{**arrays, "degradation": np.array(["av1_crf50", "clean", "clean", "av1_crf30+ff_noise"])})
    write_split(heldout, windows[4:], 1)
    torch.manual_seed(7)
    shipped = build_model("aqs_effnet_b0")
    with torch.no_grad():
        shipped.statistics_mean.fill_(0.5)
        shipped.statistics_scale.fill_(2.0)
    save_fp16_safetensors(shipped, tmp_path / "shipped.safetensors")
    assert refit(["--model", "aqs_effnet_b0", "--init", str(tmp_path / "shipped.safetensors"), "--train", str(train),
                  "--heldout", f"{heldout},{heldout}", "--calibration", "--exclude-generators", "av1",
                  "--out", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "2", "--threads", "2"]) == 0
    log = json.loads((tmp_path / "out" / "log.jsonl").read_text())
    assert log["train_windows"] == 4 + 2  # shard_000, and shard_001 without its two AV1 windows
    assert set(log["more_heldout"][str(heldout)]) >= {"heldout_srocc", "heldout_mean_auc"}
    after = torch.load(tmp_path / "out" / "weights.pt", weights_only=True)
    assert torch.all(after["statistics_mean"] == 0.5) and torch.all(after["statistics_scale"] == 2.0)
    key = "backbone.features.0.0.weight"
    assert torch.equal(after[key], shipped.state_dict()[key].half().float())


def test_refit_adds_the_classical_statistics_to_a_model_without_them(tmp_path, sampled_windows):
    from engines.architectures import AQSNet, EfficientNetB0
    from engines.architectures.statistics import GRAPH_SPATIAL_FRAMES, STATISTICS_COLUMNS
    from engines.classical import extract_features
    from export.refit_heads import main as refit

    windows = sampled_windows(6)
    write_split(tmp_path / "data" / "train", windows[:4], 0)
    write_split(tmp_path / "data" / "heldout", windows[4:], 1)
    torch.manual_seed(7)
    before = AQSNet(EfficientNetB0(), statistics=False).state_dict()  # what stage 2 shipped
    torch.save(before, tmp_path / "init.pt")
    assert refit(["--model", "aqs_effnet_b0", "--init", str(tmp_path / "init.pt"), "--train", str(tmp_path / "data" / "train"),
                  "--heldout", str(tmp_path / "data" / "heldout"), "--out", str(tmp_path / "out"), "--epochs", "2",
                  "--batch-size", "2", "--threads", "2"]) == 0
    after = torch.load(tmp_path / "out" / "weights.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("backbone.", "temporal.")))
    expected = extract_features(windows[:4], spatial_frames=GRAPH_SPATIAL_FRAMES)[:, list(STATISTICS_COLUMNS)]
    np.testing.assert_allclose(after["statistics_mean"].numpy(), expected.mean(0), rtol=1e-5, atol=1e-5)
    model = build_model("aqs_effnet_b0").eval()
    model.load_state_dict(after)  # strict: the refit model is a complete aqs_effnet_b0
    with torch.no_grad():
        assert all(torch.isfinite(t).all() for t in model(torch.from_numpy(windows[4:])))


def test_fresh_heads_keep_only_the_backbone_and_temporal_branch(tmp_path, sampled_windows):
    """--fresh-heads trains the trunk and heads from random initialisation and refits the statistics'
    scaling, so two backbones can be compared with heads trained on the same windows."""
    from export.refit_heads import main as refit

    windows = sampled_windows(6)
    write_split(tmp_path / "data" / "train", windows[:4], 0)
    write_split(tmp_path / "data" / "heldout", windows[4:], 1)
    torch.manual_seed(7)
    init = build_model("aqs_effnet_b0")
    with torch.no_grad():
        init.quality_head.bias.fill_(3.0)
        init.statistics_mean.fill_(0.5)
    torch.save(init.state_dict(), tmp_path / "init.pt")
    common = ["--model", "aqs_effnet_b0", "--init", str(tmp_path / "init.pt"), "--train", str(tmp_path / "data" / "train"),
              "--heldout", str(tmp_path / "data" / "heldout"), "--epochs", "1", "--batch-size", "2", "--threads", "2"]
    assert refit([*common, "--out", str(tmp_path / "kept")]) == 0
    assert refit([*common, "--out", str(tmp_path / "fresh"), "--fresh-heads"]) == 0
    kept, fresh = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("kept", "fresh"))
    assert float(kept["quality_head.bias"]) == pytest.approx(3.0, abs=0.05)
    assert abs(float(fresh["quality_head.bias"])) < 1.0
    assert torch.all(kept["statistics_mean"] == 0.5) and not torch.all(fresh["statistics_mean"] == 0.5)
    before = init.state_dict()
    assert all(torch.equal(before[k], fresh[k]) for k in before if k.startswith(("backbone.", "temporal.")))
    log = json.loads((tmp_path / "fresh" / "log.jsonl").read_text())
    assert log["heads"] == "fresh"


def test_weights_of_another_architecture_are_refused_by_name(tmp_path, sampled_windows):
    from export.refit_heads import main as refit

    windows = sampled_windows(4)
    write_split(tmp_path / "data" / "train", windows[:2], 0)
    write_split(tmp_path / "data" / "heldout", windows[2:], 1)
    torch.save(build_model("aqs_mnv3_small").state_dict(), tmp_path / "mnv3.pt")
    with pytest.raises(SystemExit, match="mnv3.pt: not weights of this model"):
        refit(["--model", "aqs_effnet_b0", "--init", str(tmp_path / "mnv3.pt"), "--train", str(tmp_path / "data" / "train"),
               "--heldout", str(tmp_path / "data" / "heldout"), "--out", str(tmp_path / "out")])
