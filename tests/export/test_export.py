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
    shipped = sorted(p.name for p in MODELS.iterdir() if p.suffix in (".onnx", ".safetensors"))
    assert sorted(manifest["files"]) == shipped
    assert {"aqs_effnet_lite0.onnx", "aqs_effnet_b0.onnx", "aqs_mnv3_small.onnx"} <= set(shipped)
    for name, entry in manifest["files"].items():
        path = MODELS / name
        assert path.stat().st_size < MAX_FILE_BYTES
        assert entry["sha256"] == sha256(path)
        assert entry["precision"] in ("fp32", "int8", "fp16")
        assert ("." + entry["precision"] + ".") in name or entry["precision"] == "fp32"
        assert entry["architecture"] in ("aqs_effnet_lite0", "aqs_effnet_b0", "aqs_mnv3_small")


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


def _piqe_loop(image: np.ndarray) -> float:
    """PIQE written block by block, straight from the paper's description, to check the vectorised one."""
    import cv2

    from export.peers import _gray

    g = _gray(image)
    g = np.pad(g, ((0, (-g.shape[0]) % 16), (0, (-g.shape[1]) % 16)), mode="symmetric")
    mu = cv2.GaussianBlur(g, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    sd = np.sqrt(np.abs(cv2.GaussianBlur(g * g, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu))
    m = (g - mu) / (sd + 1)
    total, active = 0.0, 0
    for i in range(0, m.shape[0], 16):
        for j in range(0, m.shape[1], 16):
            b = m[i : i + 16, j : j + 16]
            var = b.var(ddof=1)
            if var <= 0.1:
                continue
            active += 1
            edges = [b[0], b[15], b[:, 0], b[:, 15]]
            impaired = any(e[k : k + 6].std(ddof=1) < 0.1 for e in edges for k in range(11))
            centre = b[:, 7:9].ravel()
            surround = np.delete(b, [7, 8], axis=1).ravel()
            ratio = centre.std(ddof=1) / surround.std(ddof=1)
            ratio = 0.0 if np.isnan(ratio) else ratio
            sigma = np.sqrt(var)
            beta = abs(sigma - ratio) / max(sigma, ratio)
            total += impaired * (1 - var) + (sigma > 2 * beta) * var
    return 100 * (total + 1) / (active + 1)


def test_peers_piqe_and_brisque_rank_obvious_damage():
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    from export.peers import Brisque, piqe

    clean = skimage_data.astronaut()[:, :500]  # 512x500: not a multiple of the block size
    _, jpeg = cv2.imencode(".jpg", clean[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 5])
    blocky = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    blurred = cv2.GaussianBlur(clean, (0, 0), 3)
    assert piqe(clean) == pytest.approx(_piqe_loop(clean), rel=1e-9)
    assert piqe(blocky) == pytest.approx(_piqe_loop(blocky), rel=1e-9)
    assert piqe(clean) < piqe(blocky) and piqe(clean) < piqe(blurred)
    assert 0 <= piqe(clean) <= 100
    try:
        brisque = Brisque()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert brisque(clean) < brisque(blocky) and brisque(clean) < brisque(blurred)


def test_trt_build_imports_tensorrt_lazily():
    import subprocess
    import sys

    code = "import sys, export.trt_build; assert 'tensorrt' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=MODELS.parents[1])


def test_trt_build_fp16_engine(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pytest.skip("TensorRT is not installable on these machines")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")
    from export.trt_build import build_engine

    path = build_engine(MODELS / "aqs_mnv3_small.onnx", tmp_path / "m.plan", fp16=True, max_batch=4, opt_batch=2)
    assert path.stat().st_size > 0


@pytest.mark.parametrize("name", ["aqs_effnet_lite0", "aqs_effnet_b0"])
def test_shipped_int8_keeps_the_classical_statistics_in_float(name):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODELS / f"{name}.int8.onnx"))
    producer = {out: node for node in model.graph.node for out in node.output}

    def in_statistics(node) -> bool:
        return any(p.key == "namespace" and "/statistics" in p.value for p in node.metadata_props)

    statistics = [node for node in model.graph.node if in_statistics(node)]
    assert len(statistics) > 100  # the branch is there
    dequantized = [node.name for node in statistics
                   if any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input)]
    assert not dequantized, dequantized[:5]


@pytest.mark.parametrize("name", ["aqs_effnet_lite0", "aqs_effnet_b0"])
def test_shipped_effnet_onnx_is_the_torch_model_with_the_shipped_weights(name, sampled_windows):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file

    from engines.architectures import build_model

    model = build_model(name).eval()
    state = load_file(str(MODELS / f"{name}.fp16.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()})  # strict: same architecture
    windows = sampled_windows(2)
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(windows))]
    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: windows})
    for name, e, g in zip(OUTPUT_NAMES, expected, got):
        np.testing.assert_allclose(g, e, atol=0.05, err_msg=name)  # fp16 weights vs fp32
