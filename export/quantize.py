"""Static int8 quantisation (QDQ, per-channel weights) of a shipped ONNX model with ONNX Runtime,
calibrated on training windows, and a measurement of what it costs and gains.

    python -m export.quantize --model engines/models/aqs_effnet_b0.onnx \
        --out engines/models/aqs_effnet_b0.int8.onnx --report runs/quantize_aqs_effnet_b0.json

Calibration feeds real uint8 windows (the model's own input; the cast and normalisation are inside
the graph). Only convolutions and matrix products are quantised; the elementwise pre-processing
(motion energy) stays in float, and so do the temporal branch's fixed luma / difference map and
its first convolution: an 8-bit activation scale would flatten frame differences of a few grey
levels. The report holds held-out SROCC/PLCC against VMAF and mean artifact ROC-AUC for fp32 and
int8, the largest output differences, and milliseconds per batch for both.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from engines.contract import INPUT_NAME, OUTPUT_NAMES, WINDOW_FRAMES
from export.metrics import artifact_aucs, mean_defined, plcc, srocc

REPO = Path(__file__).resolve().parent.parent
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]  # outside the backbone


class WindowReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over uint8 windows, ``batch`` at a time."""

    def __init__(self, windows: np.ndarray, batch: int = 8) -> None:
        self.batches = [windows[i : i + batch] for i in range(0, len(windows), batch)]
        self.position = 0

    def get_next(self):
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {INPUT_NAME: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def float_input_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the temporal branch's convolutions that must stay in float: the fixed 1x1 map from
    the 21 RGB channels of the window to luma and frame differences, and the first learned
    convolution over luma and differences (found by their weights' input channels)."""
    frames = WINDOW_FRAMES
    keep = {3 * frames, frames + 2 * (frames - 1)}
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return {
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and len(shapes.get(node.input[1], ())) == 4 and shapes[node.input[1]][1] in keep
    }


def nodes_to_quantize(model: onnx.ModelProto) -> list[str]:
    """Every node of the backbone (so SiLU, squeeze-excitation and residual adds stay in int8
    between convolutions instead of bouncing through float), and the convolutions and matrix
    products elsewhere except :func:`float_input_nodes` and the classical statistics. The exporter
    records each node's module path in its ``namespace`` metadata."""
    excluded = float_input_nodes(model)
    names = []
    for node in model.graph.node:
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        path = namespace.split(":")[1] if ":" in namespace else ""
        if "/statistics" in path:  # hand-crafted measurements: thresholds and logs need float
            continue
        if "/backbone" in path or (node.op_type in QUANTIZED_OPS and node.name not in excluded):
            names.append(node.name)
    return names


def quantize(model_path: Path, out: Path, calibration: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference only: graph optimisation would rename nodes and drop their metadata
        quant_pre_process(str(model_path), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        quantize_static(
            str(prepared), str(out), WindowReader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes_to_quantize(model),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return out


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, windows: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    outs = [sess.run(list(OUTPUT_NAMES), {INPUT_NAME: windows[i : i + batch]}) for i in range(0, len(windows), batch)]
    return [np.concatenate([o[k] for o in outs]) for k in range(len(OUTPUT_NAMES))]


def time_batches(sess, windows: np.ndarray, batch: int, repeats: int = 10) -> float:
    """Median milliseconds for one batch of ``batch`` windows (after two warm-up runs)."""
    x = np.ascontiguousarray(np.resize(windows, (batch, *windows.shape[1:])))
    for _ in range(2):
        sess.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def compare(fp32: Path, int8: Path, heldout, threads: int = 2, batches=(1, 8)) -> dict:
    """Accuracy of both files on the held-out split and their speed on ``threads`` CPU threads."""
    report: dict = {"threads": threads, "heldout_windows": len(heldout)}
    outputs = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        sess = session(path, threads)
        quality, logits, intensity = outputs[name] = run(sess, heldout.windows)
        report[name] = {
            "file": path.name,
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "srocc": srocc(quality, heldout.quality),
            "plcc": plcc(quality, heldout.quality),
            "mean_auc": mean_defined(artifact_aucs(logits, heldout.presence).values()),
            "ms_per_batch": {str(b): round(time_batches(sess, heldout.windows[:8], b), 1) for b in batches},
        }
    report["max_abs_diff"] = {
        k: float(np.max(np.abs(a - b))) for k, a, b in zip(OUTPUT_NAMES, outputs["fp32"], outputs["int8"])
    }
    report["srocc_loss"] = report["fp32"]["srocc"] - report["int8"]["srocc"]
    return report


def main(argv: list[str] | None = None) -> int:
    from export.train import ShardCache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 ONNX file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "dataset")
    parser.add_argument("--calibration-windows", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", type=Path, help="write the fp32/int8 comparison here (JSON)")
    args = parser.parse_args(argv)

    train = ShardCache(args.data / "train").refresh()
    if train is None:
        print(f"no training shards under {args.data / 'train'} for calibration", file=sys.stderr)
        return 1
    pick = np.sort(np.random.default_rng(args.seed).permutation(len(train))[: args.calibration_windows])
    quantize(args.model, args.out, train.windows[pick])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), calibrated on {len(pick)} training windows")
    if args.report:
        heldout = ShardCache(args.data / "heldout").refresh()
        report = compare(args.model, args.out, heldout, args.threads)
        report["calibration_windows"] = int(len(pick))
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
