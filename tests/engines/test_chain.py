"""The fallback chain on this machine, with the real shipped model files and real libraries."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines import chain
from engines.architectures import MODEL_NAMES
from engines.base import BaseEngine, Engine, EngineUnavailable
from engines.chain import (
    BACKEND_MODULES,
    BACKENDS,
    DEFAULT_MODEL,
    DEFAULT_PREFERENCE,
    KNOWN_BACKENDS,
    KNOWN_MODELS,
    Selection,
    Skipped,
    Spec,
    cuda_device_present,
    parse_preference,
    parse_spec,
    select_engine,
)
from engines.contract import INPUT_SHAPE
from engines.modelfiles import DEFAULT_MODEL_DIR, MANIFEST_NAME, read_manifest

REPO = Path(__file__).resolve().parents[2]
TORCH_CPU_SKIP_REASON = BACKENDS["torch"].cpu_skip_reason
HAS_CLASSICAL = importlib.util.find_spec("engines.classical") is not None
needs_no_gpu = pytest.mark.skipif(cuda_device_present(), reason="checks the CPU-only chain; this machine has an NVIDIA device")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def _files(models: Path, model: str) -> list[Path]:
    return [e.path for e in read_manifest(models).values() if e.architecture == model and e.format == "onnx"]


def _reasons(selection_or_skipped) -> dict[str, str]:
    skipped = selection_or_skipped.skipped if isinstance(selection_or_skipped, Selection) else selection_or_skipped
    return {s.spec: s.reason for s in skipped}


# --- preference parsing -------------------------------------------------------------------------

def test_default_preference_parses_and_is_fastest_first() -> None:
    specs = parse_preference(None)
    assert [str(s) for s in specs] == list(DEFAULT_PREFERENCE)
    assert specs[0].backend == "tensorrt" and specs[-1] == Spec("classical", None)
    assert {s.backend for s in specs} == set(KNOWN_BACKENDS)


@pytest.mark.parametrize(
    "text, spec",
    [
        ("onnxruntime", Spec("onnxruntime", DEFAULT_MODEL)),
        ("onnxruntime:aqs_mnv3_small", Spec("onnxruntime", "aqs_mnv3_small")),
        (" TensorRT:aqs_effnet_b0 ", Spec("tensorrt", "aqs_effnet_b0")),
        ("torch", Spec("torch", DEFAULT_MODEL)),
        ("classical", Spec("classical", None)),
    ],
)
def test_parse_spec(text: str, spec: Spec) -> None:
    assert parse_spec(text) == spec
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("openvino", "unknown engine backend 'openvino'"),
        ("onnxruntime:resnet50", "unknown model 'resnet50'"),
        ("onnxruntime:", "empty model name"),
        ("classical:aqs_effnet_b0", "takes no model"),
        ("", "empty"),
    ],
)
def test_parse_spec_rejects_with_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_unknown_entry_fails_before_anything_loads() -> None:
    with pytest.raises(ValueError, match="expected one of tensorrt, onnxruntime, torch, classical"):
        select_engine(["onnxruntime", "tflite"])
    with pytest.raises(ValueError, match="empty"):
        parse_preference([])
    assert set(KNOWN_MODELS) == {"aqs_effnet_b0", "aqs_effnet_lite0", "aqs_mnv3_small"}


# --- the backends' own declarations -------------------------------------------------------------

def test_each_backend_module_declares_itself_once() -> None:
    modules = [importlib.import_module(name) for name in BACKEND_MODULES]
    assert [m.BACKEND.name for m in modules] == list(KNOWN_BACKENDS)
    assert KNOWN_MODELS == MODEL_NAMES
    for module in modules:
        engines = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__
                   and hasattr(v, "infer")]
        assert engines and all(issubclass(cls, BaseEngine) for cls in engines), module.__name__


def test_threads_are_refused_for_a_named_backend_that_takes_none() -> None:
    ignoring = [name for name, backend in BACKENDS.items() if not backend.takes_threads]
    assert ignoring == ["tensorrt"]
    for name in ignoring:
        with pytest.raises(ValueError, match=f"{name} takes no thread count"):
            parse_preference([f"{name}:aqs_mnv3_small", "classical"], threads=2)
        with pytest.raises(ValueError, match=f"{name} takes no thread count"):
            select_engine([name, "classical"], threads=2)
        assert parse_preference([name, "classical"])  # without threads it is fine
    assert parse_preference(None, threads=2) == parse_preference(None)  # the default chain: for its CPU engines


def test_threads_reach_the_classical_engine_through_the_chain() -> None:
    selection = select_engine(["classical"], threads=2)
    try:
        assert selection.engine.threads == 2
    finally:
        selection.engine.close()


def test_threads_reach_the_onnxruntime_session_through_the_chain() -> None:
    selection = select_engine(["onnxruntime:aqs_mnv3_small"], threads=3)
    try:
        assert selection.engine._session.get_session_options().intra_op_num_threads == 3  # noqa: SLF001
    finally:
        selection.engine.close()


def test_untested_backend_warns_once_when_selected(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    monkeypatch.setattr(chain, "_warned", set())
    with caplog.at_level("WARNING", logger="engines.chain"):
        chain._warn_once(BACKENDS["tensorrt"])  # noqa: SLF001
        chain._warn_once(BACKENDS["tensorrt"])  # noqa: SLF001
        chain._warn_once(BACKENDS["onnxruntime"])  # noqa: SLF001
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("engine tensorrt selected: ")
    assert "never run on real hardware" in warnings[0]


# --- the chain on this machine ------------------------------------------------------------------

@needs_no_gpu
def test_default_chain_picks_onnxruntime_here_and_says_why_gpu_engines_were_skipped() -> None:
    selection = select_engine()
    try:
        assert isinstance(selection.engine, Engine)
        assert selection.spec == "onnxruntime:aqs_effnet_b0"
        assert selection.engine.info.engine == "onnxruntime"
        assert selection.engine.info.provider == "CPUExecutionProvider"
        reasons = _reasons(selection)
        assert list(reasons)[:2] == ["tensorrt:aqs_effnet_b0", "torch:aqs_effnet_b0"]
        assert "no CUDA device" in reasons["tensorrt:aqs_effnet_b0"]
        if importlib.util.find_spec("tensorrt") is None:
            assert "tensorrt not installed" in reasons["tensorrt:aqs_effnet_b0"]
        if importlib.util.find_spec("torch") is not None:
            assert reasons["torch:aqs_effnet_b0"] == TORCH_CPU_SKIP_REASON
        else:
            assert "torch not installed" in reasons["torch:aqs_effnet_b0"]
        out = selection.engine.infer(np.zeros((2, *INPUT_SHAPE), dtype=np.uint8))
        assert len(out) == 2
    finally:
        selection.engine.close()


@needs_no_gpu
def test_same_list_spelled_out_is_still_the_default_chain() -> None:
    selection = select_engine(list(DEFAULT_PREFERENCE))
    assert selection.spec == "onnxruntime:aqs_effnet_b0"
    selection.engine.close()


def test_missing_model_file_falls_back_to_the_light_model(models: Path) -> None:
    for path in _files(models, "aqs_effnet_b0"):
        path.unlink()
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"], model_dir=models)
    assert selection.spec == "onnxruntime:aqs_mnv3_small"
    reason = _reasons(selection)["onnxruntime:aqs_effnet_b0"]
    assert "model file missing" in reason and str(models) in reason
    selection.engine.close()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_model_file_falls_back(models: Path, damage: str) -> None:
    for path in _files(models, "aqs_effnet_b0"):
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) - 4096]
        else:
            data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"], model_dir=models)
    assert selection.spec == "onnxruntime:aqs_mnv3_small"
    assert "sha256 mismatch" in _reasons(selection)["onnxruntime:aqs_effnet_b0"]
    selection.engine.close()


def test_manifest_sha256_mismatch_falls_back(models: Path) -> None:
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    for name, meta in manifest["files"].items():
        if meta["architecture"] == "aqs_effnet_b0":
            meta["sha256"] = "f" * 64
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"], model_dir=models)
    assert selection.spec == "onnxruntime:aqs_mnv3_small"
    assert "sha256 mismatch (expected ffffffffffffffff" in _reasons(selection)["onnxruntime:aqs_effnet_b0"]
    selection.engine.close()


def test_nothing_works_lists_every_reason(models: Path) -> None:
    (models / MANIFEST_NAME).unlink()
    with pytest.raises(EngineUnavailable) as info:
        select_engine(["tensorrt", "onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"], model_dir=models)
    message = str(info.value)
    for spec in ("tensorrt:aqs_effnet_b0", "onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"):
        assert spec in message
    assert "manifest missing" in message


@pytest.mark.skipif(not HAS_CLASSICAL, reason="engines.classical not in this checkout yet")
def test_classical_is_the_last_resort(models: Path) -> None:
    (models / MANIFEST_NAME).unlink()
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "classical"], model_dir=models)
    assert selection.spec == "classical" and selection.engine.info.engine == "classical"
    assert "manifest missing" in _reasons(selection)["onnxruntime:aqs_effnet_b0"]
    selection.engine.close()


@needs_no_gpu
def test_gpu_backend_named_explicitly_is_skipped_with_reason() -> None:
    selection = select_engine(["tensorrt:aqs_mnv3_small", "onnxruntime:aqs_mnv3_small"])
    assert selection.spec == "onnxruntime:aqs_mnv3_small"
    assert "no CUDA device" in _reasons(selection)["tensorrt:aqs_mnv3_small"]
    selection.engine.close()


# --- real missing libraries, in a fresh interpreter ------------------------------------------------

def _run(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_BLOCK_ORT = "import sys; sys.modules['onnxruntime'] = None\n"  # any `import onnxruntime` now raises ImportError


def test_missing_onnxruntime_is_skipped_with_reason() -> None:
    result = _run(
        _BLOCK_ORT
        + """
import json
from engines.base import EngineUnavailable
from engines.chain import select_engine, load_spec
try:
    import onnxruntime
    imported = True
except ImportError:
    imported = False
out = {"imported": imported}
try:
    s = select_engine(["onnxruntime:aqs_effnet_b0", "onnxruntime:aqs_mnv3_small"])
    out["chosen"] = s.spec
except EngineUnavailable as exc:
    out["error"] = str(exc)
try:
    load_spec("onnxruntime")   # past the pre-check: the backend's own lazy import fails
except EngineUnavailable as exc:
    out["direct"] = str(exc)
print(json.dumps(out))
"""
    )
    assert result["imported"] is False
    assert "chosen" not in result
    assert "onnxruntime:aqs_effnet_b0: onnxruntime not installed" in result["error"]
    assert "onnxruntime:aqs_mnv3_small: onnxruntime not installed" in result["error"]
    assert result["direct"].startswith("onnxruntime not installed")


@pytest.mark.skipif(not HAS_CLASSICAL, reason="engines.classical not in this checkout yet")
def test_missing_onnxruntime_falls_back_to_classical() -> None:
    result = _run(
        _BLOCK_ORT
        + """
import json
from engines.chain import select_engine
s = select_engine()
print(json.dumps({"chosen": s.spec, "skipped": {k.spec: k.reason for k in s.skipped}}))
"""
    )
    assert result["chosen"] == "classical"
    assert "onnxruntime not installed" in result["skipped"]["onnxruntime:aqs_effnet_b0"]


def test_importing_the_chain_imports_no_inference_library() -> None:
    result = _run(
        """
import json, sys
import engines.chain, engines.onnxruntime_engine, engines.torch_engine, engines.tensorrt_engine, engines.modelfiles
heavy = [m for m in ("torch", "tensorrt", "onnxruntime", "torch_tensorrt", "cuda", "pycuda") if m in sys.modules]
print(json.dumps({"heavy": heavy}))
"""
    )
    assert result["heavy"] == []


@needs_no_gpu
def test_default_chain_on_cpu_never_imports_torch_or_tensorrt() -> None:
    result = _run(
        """
import json, sys
from engines.chain import select_engine
s = select_engine()
print(json.dumps({"chosen": s.spec, "torch": "torch" in sys.modules, "tensorrt": "tensorrt" in sys.modules}))
"""
    )
    assert result == {"chosen": "onnxruntime:aqs_effnet_b0", "torch": False, "tensorrt": False}


def test_skipped_is_printable() -> None:
    assert str(Skipped("a", "b")) == "a: b"
