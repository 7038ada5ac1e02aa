"""Model files are checked against the manifest sha256 before anything parses them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engines.base import EngineUnavailable
from engines.modelfiles import (
    DEFAULT_MODEL_DIR,
    MANIFEST_NAME,
    find_model_file,
    find_model_files,
    load_weights,
    read_manifest,
    read_verified,
    sha256_file,
    verify,
    write_manifest,
)


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """A private copy of the shipped engines/models/ to damage."""
    target = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def test_shipped_manifest_lists_real_files_with_matching_sha256() -> None:
    entries = read_manifest()
    assert {e.architecture for e in entries.values()} >= {"aqs_effnet_b0", "aqs_mnv3_small"}
    for entry in entries.values():
        assert entry.path.parent == DEFAULT_MODEL_DIR
        assert entry.precision in ("fp32", "fp16", "int8")
        verify(entry)  # raises on mismatch
        assert sha256_file(entry.path) == entry.sha256


def test_find_model_file_prefers_requested_precision_order(models: Path) -> None:
    onnx = find_model_files("aqs_effnet_b0", "onnx", models, ("int8", "fp32"))
    assert onnx and all(e.format == "onnx" for e in onnx)
    precisions = [e.precision for e in onnx]
    assert precisions == sorted(precisions, key=("int8", "fp32").index)
    with pytest.raises(EngineUnavailable, match="no onnx file for model 'nope'"):
        find_model_file("nope", "onnx", models)


def test_missing_manifest(models: Path) -> None:
    (models / MANIFEST_NAME).unlink()
    with pytest.raises(EngineUnavailable, match="manifest missing") as info:
        read_manifest(models)
    assert str(models / MANIFEST_NAME) in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"nofiles": 1}', "no 'files' object"),
        ('{"files": {"a.onnx": {"sha256": "xyz"}}}', "no valid sha256"),
        ('{"files": {"../a.onnx": {"sha256": "' + "0" * 64 + '"}}}', "plain file name"),
    ],
)
def test_bad_manifest(models: Path, text: str, message: str) -> None:
    (models / MANIFEST_NAME).write_text(text)
    with pytest.raises(EngineUnavailable, match=message):
        read_manifest(models)


def _onnx_entry(models: Path):
    return find_model_file("aqs_effnet_b0", "onnx", models, ("fp32", "int8"))


def test_verified_bytes_are_the_file(models: Path) -> None:
    entry = _onnx_entry(models)
    assert read_verified(entry) == entry.path.read_bytes()


def test_missing_file(models: Path) -> None:
    entry = _onnx_entry(models)
    entry.path.unlink()
    with pytest.raises(EngineUnavailable, match="model file missing") as info:
        read_verified(entry)
    assert str(entry.path) in str(info.value)
    with pytest.raises(EngineUnavailable, match="model file missing"):
        verify(entry)


def test_truncated_file(models: Path) -> None:
    entry = _onnx_entry(models)
    data = entry.path.read_bytes()
    entry.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineUnavailable, match="sha256 mismatch") as info:
        read_verified(entry)
    assert str(entry.path) in str(info.value)


def test_flipped_byte(models: Path) -> None:
    entry = _onnx_entry(models)
    data = bytearray(entry.path.read_bytes())
    data[len(data) // 3] ^= 0x01
    entry.path.write_bytes(bytes(data))
    with pytest.raises(EngineUnavailable, match="sha256 mismatch"):
        read_verified(entry)
    with pytest.raises(EngineUnavailable, match="sha256 mismatch"):
        verify(entry)


def test_manifest_sha256_mismatch(models: Path) -> None:
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    name = _onnx_entry(models).name
    manifest["files"][name]["sha256"] = "0" * 64
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(EngineUnavailable, match="sha256 mismatch"):
        read_verified(_onnx_entry(models))


def test_safetensors_weights_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    safetensors_torch.save_file(state, str(tmp_path / "m.safetensors"))
    write_manifest(tmp_path, {"m.safetensors": {"architecture": "m", "precision": "fp32"}})
    loaded = load_weights(find_model_file("m", "safetensors", tmp_path))
    assert set(loaded) == {"w", "b"} and torch.equal(loaded["w"], state["w"])


class _Payload:
    """Any non-tensor object: unpickling it must be refused."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"model": _Payload()}, tmp_path / "evil.pt")
    write_manifest(tmp_path, {"evil.pt": {"architecture": "m", "precision": "fp32"}})
    with pytest.raises(EngineUnavailable, match="weights_only"):
        load_weights(find_model_file("m", "torch-tensors", tmp_path))


def test_onnx_is_not_a_weight_format(models: Path) -> None:
    with pytest.raises(EngineUnavailable, match="not a weight format"):
        load_weights(_onnx_entry(models))
