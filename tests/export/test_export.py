"""ONNX export (parity with torch on real sampled windows), the shipped files and their manifest,
int8 quantisation and the TensorRT build script."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAMES

MODELS = Path(__file__).resolve().parents[2] / "engines" / "models"


def test_manifest_lists_every_shipped_file_with_its_sha256():
    from export.model_card import MAX_FILE_BYTES, sha256

    manifest = json.loads((MODELS / "manifest.json").read_text())
    shipped = sorted(p.name for p in MODELS.glob("*.onnx"))
    assert sorted(manifest["files"]) == shipped
    assert "aqs_effnet_b0.onnx" in shipped and "aqs_mnv3_small.onnx" in shipped
    for name, entry in manifest["files"].items():
        path = MODELS / name
        assert path.stat().st_size < MAX_FILE_BYTES
        assert entry["sha256"] == sha256(path)
        assert entry["precision"] in ("fp32", "int8")
        assert entry["architecture"] in ("aqs_effnet_b0", "aqs_mnv3_small")


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.onnx")))
def test_shipped_onnx_follows_the_contract(name, sampled_windows):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(MODELS / name), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == INPUT_NAME and inp.type == "tensor(uint8)" and list(inp.shape[1:]) == list(INPUT_SHAPE)
    assert isinstance(inp.shape[0], str)  # dynamic batch
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    for batch in (1, 3):
        q, logits, intensity = session.run(None, {INPUT_NAME: sampled_windows(batch)})
        assert q.shape == (batch,) and logits.shape == (batch, 10) and intensity.shape == (batch, 10)
        assert np.all((q >= 0) & (q <= 1)) and np.all((intensity >= 0) & (intensity <= 1))


def test_export_matches_torch_on_real_windows(tmp_path, sampled_windows):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from export.export_onnx import PARITY_ATOL, export, parity, seeded_model

    model = seeded_model("aqs_mnv3_small", seed=1)
    path = export(model, tmp_path / "m.onnx")
    diffs = parity(model, path, sampled_windows(3))  # exported with batch 2, run with 3: dynamic batch
    assert max(diffs.values()) < PARITY_ATOL, diffs
