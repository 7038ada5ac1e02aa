"""torch engine: CPU parity with ONNX Runtime on the same batch; the CUDA path where a GPU exists."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.base import EngineUnavailable
from engines.chain import select_engine
from engines.contract import INPUT_SHAPE
from engines.modelfiles import DEFAULT_MODEL_DIR, MANIFEST_NAME, read_manifest, write_manifest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.torch import save_file  # noqa: E402

from engines import onnxruntime_engine, torch_engine  # noqa: E402

PARITY_ATOL = 2e-4
MODEL = "aqs_mnv3_small"  # the light model keeps the export in the fallback path quick


def _windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *INPUT_SHAPE), dtype=np.uint8)


def _shipped_weights(model: str, precision: str = "fp32") -> bool:
    return any(e.architecture == model and e.format in ("safetensors", "torch-tensors") and e.precision == precision
               for e in read_manifest().values())


@pytest.fixture(scope="module")
def paired_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with the same weights as ONNX (fp32) and safetensors (fp32).

    The shipped folder when it holds both in fp32 (it ships fp16 weights: see the test below); otherwise a seeded model exported here with the project's
    exporter, so the parity check always compares two real files of the same weights."""
    if _shipped_weights(MODEL):
        return DEFAULT_MODEL_DIR
    export_onnx = pytest.importorskip("export.export_onnx")
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("paired")
    model = export_onnx.seeded_model(MODEL, seed=123)
    export_onnx.export(model, folder / f"{MODEL}.onnx")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{MODEL}.safetensors"))
    write_manifest(folder, {f"{MODEL}.onnx": {"architecture": MODEL, "precision": "fp32"},
                            f"{MODEL}.safetensors": {"architecture": MODEL, "precision": "fp32"}})
    return folder


def test_cpu_engine_matches_onnxruntime_fp32_on_the_same_batch(tmp_path: Path, paired_models: Path) -> None:
    """torch CPU vs ONNX Runtime on the fp32 ONNX of the same weights (a copy without any int8 file)."""
    folder = tmp_path / "models"
    shutil.copytree(paired_models, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if v.get("precision") == "fp32"}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    engine = torch_engine.load(MODEL, folder, threads=1, device="cpu")
    assert engine.info.engine == "torch" and engine.info.provider == "cpu (fp32)"
    assert engine.info.model.endswith((".safetensors", ".pt"))
    reference = onnxruntime_engine.load(MODEL, folder, threads=1)
    assert reference.info.model.endswith(".onnx")
    batch = _windows(2, seed=5)
    a, b = engine.infer(batch), reference.infer(batch)
    np.testing.assert_allclose(a.quality, b.quality, atol=PARITY_ATOL)
    np.testing.assert_allclose(a.artifact_logits, b.artifact_logits, atol=PARITY_ATOL * 10)
    np.testing.assert_allclose(a.intensity, b.intensity, atol=PARITY_ATOL)
    engine.close()
    reference.close()


@pytest.mark.skipif(not _shipped_weights(MODEL, "fp16"), reason="no fp16 weights shipped for the light model")
def test_shipped_fp16_weights_match_the_shipped_fp32_onnx() -> None:
    """The shipped torch weights (fp16, loaded into the fp32 model on CPU) and the shipped fp32 ONNX are the
    same model: outputs agree within what rounding the weights to fp16 costs."""
    folder = DEFAULT_MODEL_DIR
    engine = torch_engine.load(MODEL, folder, threads=1, device="cpu")
    assert engine.info.model.endswith(".fp16.safetensors")
    reference = onnxruntime_engine.load(MODEL, folder, threads=1)
    batch = _windows(2, seed=7)
    a, b = engine.infer(batch), reference.infer(batch)
    np.testing.assert_allclose(a.quality, b.quality, atol=1e-2)
    np.testing.assert_allclose(a.intensity, b.intensity, atol=1e-2)
    np.testing.assert_allclose(a.artifact_logits, b.artifact_logits, atol=5e-2)
    engine.close()
    reference.close()


def test_named_torch_runs_on_cpu_but_default_chain_does_not(paired_models: Path) -> None:
    selection = select_engine(["torch:aqs_mnv3_small"], model_dir=paired_models)
    assert selection.engine.info.engine == "torch"
    selection.engine.close()
    if not torch.cuda.is_available():
        with pytest.raises(EngineUnavailable, match="for development"):
            torch_engine.load(MODEL, paired_models, require_cuda=True)


def test_threads_reach_torch_through_the_chain(paired_models: Path) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    try:
        selection = select_engine(["torch:aqs_mnv3_small"], model_dir=paired_models, threads=wanted)
        selection.engine.close()
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / MANIFEST_NAME).read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith((".safetensors", ".pt"))}
    (tmp_path / "m" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(EngineUnavailable, match="no weight file"):
        torch_engine.load(MODEL, tmp_path / "m", device="cpu")


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    save_file({"x": torch.zeros(3)}, str(tmp_path / f"{MODEL}.safetensors"))
    write_manifest(tmp_path, {f"{MODEL}.safetensors": {"architecture": MODEL, "precision": "fp32"}})
    with pytest.raises(EngineUnavailable, match="weights do not fit"):
        torch_engine.load(MODEL, tmp_path, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the torch CUDA path (fp16, CUDA graphs) needs a GPU")
def test_cuda_engine_matches_cpu_fp32_within_fp16_tolerance(paired_models: Path) -> None:
    gpu = torch_engine.load(MODEL, paired_models, device="cuda:0")
    cpu = torch_engine.load(MODEL, paired_models, device="cpu")
    assert gpu.info.provider.startswith("cuda:0")
    for n in (1, 3, 8, 40):  # padded to graph sizes, and split above the largest
        batch = _windows(n, seed=n)
        a, b = gpu.infer(batch), cpu.infer(batch)
        np.testing.assert_allclose(a.quality, b.quality, atol=2e-2)
        np.testing.assert_allclose(a.intensity, b.intensity, atol=2e-2)
    gpu.close()
    cpu.close()
