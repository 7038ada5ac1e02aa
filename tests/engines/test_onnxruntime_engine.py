"""ONNX Runtime engine on the real shipped model files (CPU here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.base import Engine, EngineUnavailable
from engines.contract import INPUT_SHAPE, NUM_ARTIFACTS
from engines.modelfiles import DEFAULT_MODEL_DIR, MANIFEST_NAME, read_manifest, sha256_file
from engines import onnxruntime_engine

pytest.importorskip("onnxruntime")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def _windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *INPUT_SHAPE), dtype=np.uint8)


def _onnx_files(model: str, directory: Path = DEFAULT_MODEL_DIR) -> dict[str, str]:
    return {e.precision: e.name for e in read_manifest(directory).values() if e.architecture == model and e.format == "onnx"}


@pytest.mark.parametrize("model", ["aqs_effnet_lite0", "aqs_effnet_b0", "aqs_mnv3_small"])
def test_loads_shipped_model_on_cpu_and_scores(model: str) -> None:
    engine = onnxruntime_engine.load(model)
    try:
        assert isinstance(engine, Engine)
        files = _onnx_files(model)
        # CPU prefers the static int8 model when the CPU has integer dot products and the manifest ships one
        order, _ = onnxruntime_engine.cpu_precisions(onnxruntime_engine.cpu_flags())
        assert engine.info.model == next(files[p] for p in order if p in files)
        assert engine.info.engine == "onnxruntime"
        assert engine.info.provider == "CPUExecutionProvider"
        engine.warm_up(2)
        for n in (1, 3):
            out = engine.infer(_windows(n))
            assert out.quality.shape == (n,) and out.artifact_logits.shape == (n, NUM_ARTIFACTS)
            assert out.intensity.shape == (n, NUM_ARTIFACTS)
            assert out.quality.dtype == np.float32
            assert np.all(np.isfinite(out.artifact_logits))
            assert np.all((out.quality >= 0) & (out.quality <= 1))
            assert np.all((out.intensity >= 0) & (out.intensity <= 1))
        # batching does not change a window's result
        batch = _windows(4, seed=1)
        together = engine.infer(batch)
        alone = engine.infer(batch[2:3])
        np.testing.assert_allclose(together.quality[2:3], alone.quality, atol=1e-4)
    finally:
        engine.close()


def test_session_threads_leave_a_core_for_decoding() -> None:
    engine = onnxruntime_engine.load("aqs_mnv3_small")
    options = engine._session.get_session_options()  # noqa: SLF001 - checking the real session
    assert options.intra_op_num_threads == max(1, onnxruntime_engine.available_cores() - 1)
    assert options.inter_op_num_threads == 1
    engine.close()
    engine = onnxruntime_engine.load("aqs_mnv3_small", threads=3)
    assert engine._session.get_session_options().intra_op_num_threads == 3  # noqa: SLF001
    engine.close()


def test_rejects_wrong_input() -> None:
    engine = onnxruntime_engine.load("aqs_mnv3_small")
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
    with pytest.raises(ValueError):
        engine.infer(np.zeros((1, 6, 3, 224, 224), dtype=np.uint8))
    engine.close()


def test_non_contiguous_batch_is_scored_like_a_contiguous_one() -> None:
    engine = onnxruntime_engine.load("aqs_mnv3_small")
    batch = _windows(4)
    np.testing.assert_allclose(engine.infer(batch[::2]).quality, engine.infer(np.ascontiguousarray(batch[::2])).quality)
    engine.close()


def _rewrite(models: Path, name: str, data: bytes) -> None:
    """Replace a file and record its new sha256, so the ORT parser (not the hash check) meets the damage."""
    (models / name).write_bytes(data)
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    manifest["files"][name]["sha256"] = sha256_file(models / name)
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_corrupt_onnx_with_matching_sha256_names_path_and_ort_error(models: Path) -> None:
    files = _onnx_files("aqs_mnv3_small", models)
    for name in files.values():
        data = (models / name).read_bytes()
        _rewrite(models, name, data[: len(data) // 2])
    with pytest.raises(EngineUnavailable, match="ONNX Runtime cannot load it") as info:
        onnxruntime_engine.load("aqs_mnv3_small", models)
    assert str(models) in str(info.value)


def test_sha256_mismatch_refused_before_parsing(models: Path) -> None:
    for name in _onnx_files("aqs_mnv3_small", models).values():
        data = bytearray((models / name).read_bytes())
        data[-10] ^= 0xFF
        (models / name).write_bytes(bytes(data))
    with pytest.raises(EngineUnavailable, match="sha256 mismatch"):
        onnxruntime_engine.load("aqs_mnv3_small", models)


def test_model_not_matching_the_contract_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["N", 7, 3, 224, 224])
    y = helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["N", 7, 3, 224, 224])
    graph = helper.make_graph([helper.make_node("Identity", ["windows"], ["quality"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "wrong.onnx")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"files": {"wrong.onnx": {
        "sha256": sha256_file(tmp_path / "wrong.onnx"), "architecture": "aqs_mnv3_small", "precision": "fp32"}}}))
    with pytest.raises(EngineUnavailable, match="expected one uint8 tensor"):
        onnxruntime_engine.load("aqs_mnv3_small", tmp_path)


@pytest.mark.parametrize("model", ["aqs_effnet_lite0", "aqs_effnet_b0"])
def test_a_corrupt_preferred_file_falls_back_to_the_other_precision_and_says_so(model: str, models: Path) -> None:
    files = _onnx_files(model, models)
    if "int8" not in files:
        pytest.skip(f"no int8 model shipped for {model} yet")
    first, second = onnxruntime_engine.cpu_precisions(onnxruntime_engine.cpu_flags())[0]
    (models / files[first]).write_bytes(b"garbage")
    engine = onnxruntime_engine.load(model, models)
    assert engine.info.model == files[second]
    assert engine.fallbacks and engine.fallbacks[0][0] == files[first]
    assert "sha256 mismatch" in engine.fallbacks[0][1]
    engine.close()


def test_no_onnx_file_for_model(models: Path) -> None:
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if v["architecture"] != "aqs_mnv3_small"}
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(EngineUnavailable, match="no ONNX file for model 'aqs_mnv3_small'"):
        onnxruntime_engine.load("aqs_mnv3_small", models)


# ---------------------------------------------------------------------------------------------
# Precision by CPU
# ---------------------------------------------------------------------------------------------
_X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma{extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("extra, first", [("", "fp32"), (" avx512f avx512_vnni", "int8"), (" avx_vnni", "int8"),
                                          (" avx512f", "fp32")])
def test_int8_comes_first_only_on_a_cpu_with_integer_dot_products(extra, first):
    from engines.onnxruntime_engine import cpu_flags, cpu_precisions

    order, why = cpu_precisions(cpu_flags(_X86.format(extra=extra)))
    assert order[0] == first and set(order) == {"int8", "fp32"}
    assert why.startswith(f"{first} first")


def test_arm_features_and_unknown_flags():
    from engines.onnxruntime_engine import cpu_flags, cpu_precisions

    assert cpu_precisions(cpu_flags("processor : 0\nFeatures : fp asimd asimddp\n"))[0][0] == "int8"
    order, why = cpu_precisions(cpu_flags("no flags here\n"))
    assert order[0] == "int8" and "unknown" in why


def test_the_loaded_file_follows_this_cpus_flags(caplog):
    from engines.onnxruntime_engine import cpu_flags, cpu_precisions, load

    caplog.set_level("INFO", logger="engines.onnxruntime_engine")
    engine = load("aqs_effnet_b0", threads=1)
    first, why = cpu_precisions(cpu_flags())
    assert engine.info.model == f"aqs_effnet_b0.{'int8.' if first[0] == 'int8' else ''}onnx"
    assert why in caplog.text
