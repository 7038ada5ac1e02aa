"""TensorRT engine: the plan cache's trust rules run everywhere; building and running need TensorRT + a GPU."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engines import tensorrt_engine
from engines.chain import cuda_device_present, select_engine
from engines.contract import INPUT_SHAPE
from engines.modelfiles import cache_dir

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and cuda_device_present()
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason=tensorrt_engine.UNTESTED_REASON)


def _key(**changes: object) -> dict:
    key = tensorrt_engine.cache_key("NVIDIA H100 80GB HBM3", (9, 0), "10.13.0", "a" * 64, "fp16")
    key.update(changes)
    return key


def test_cache_round_trip(tmp_path: Path) -> None:
    key = _key()
    engine_path, sidecar_path = tensorrt_engine.cache_paths(tmp_path, "aqs_effnet_b0", key)
    tensorrt_engine.write_cached_plan(engine_path, sidecar_path, key, b"plan bytes")
    assert tensorrt_engine.read_cached_plan(engine_path, sidecar_path, key) == b"plan bytes"
    assert json.loads(sidecar_path.read_text())["key"] == key
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "change",
    [{"gpu": "NVIDIA L4"}, {"tensorrt": "10.14.0"}, {"onnx_sha256": "b" * 64}, {"precision": "int8"}, {"compute_capability": "8.9"}],
)
def test_cache_refused_when_key_differs(tmp_path: Path, change: dict) -> None:
    key = _key()
    engine_path, sidecar_path = tensorrt_engine.cache_paths(tmp_path, "aqs_effnet_b0", key)
    tensorrt_engine.write_cached_plan(engine_path, sidecar_path, key, b"plan")
    other = _key(**change)
    assert tensorrt_engine.cache_paths(tmp_path, "aqs_effnet_b0", other)[0] != engine_path
    # even when pointed at the old files, a different key is refused
    assert tensorrt_engine.read_cached_plan(engine_path, sidecar_path, other) is None


def test_cache_refused_when_engine_file_was_replaced_or_has_no_sidecar(tmp_path: Path) -> None:
    key = _key()
    engine_path, sidecar_path = tensorrt_engine.cache_paths(tmp_path, "m", key)
    tensorrt_engine.write_cached_plan(engine_path, sidecar_path, key, b"plan")
    engine_path.write_bytes(b"someone else's engine")
    assert tensorrt_engine.read_cached_plan(engine_path, sidecar_path, key) is None
    sidecar_path.unlink()
    assert tensorrt_engine.read_cached_plan(engine_path, sidecar_path, key) is None
    sidecar_path.write_text("{broken")
    assert tensorrt_engine.read_cached_plan(engine_path, sidecar_path, key) is None


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("VQA_MONITOR_CACHE_DIR", "CACHE_DIRECTORY", "STATE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert cache_dir("trt") == tmp_path / "state" / "cache" / "trt"
    monkeypatch.setenv("VQA_MONITOR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("trt") == tmp_path / "c" / "trt"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_load_without_tensorrt_says_why() -> None:
    selection = select_engine(["tensorrt", "onnxruntime:aqs_mnv3_small"])
    reason = {s.spec: s.reason for s in selection.skipped}["tensorrt:aqs_effnet_b0"]
    assert "not installed" in reason or "no CUDA device" in reason
    selection.engine.close()


@needs_trt
def test_builds_caches_and_reuses_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQA_MONITOR_CACHE_DIR", str(tmp_path))
    engine = tensorrt_engine.load("aqs_mnv3_small")
    out = engine.infer(np.zeros((3, *INPUT_SHAPE), dtype=np.uint8))
    assert len(out) == 3
    engine.close()
    plans = list((tmp_path / "trt").glob("*.engine"))
    assert len(plans) == 1 and plans[0].with_suffix(".json").exists()
    mtime = plans[0].stat().st_mtime_ns
    engine = tensorrt_engine.load("aqs_mnv3_small")  # from the cache: not rebuilt
    assert plans[0].stat().st_mtime_ns == mtime
    engine.close()


@needs_trt
def test_matches_onnxruntime_cpu() -> None:
    from engines import onnxruntime_engine

    trt_engine = tensorrt_engine.load("aqs_mnv3_small")
    reference = onnxruntime_engine.load("aqs_mnv3_small")
    batch = np.random.default_rng(0).integers(0, 256, (4, *INPUT_SHAPE), dtype=np.uint8)
    np.testing.assert_allclose(trt_engine.infer(batch).quality, reference.infer(batch).quality, atol=3e-2)
