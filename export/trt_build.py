"""Build a TensorRT engine (FP16, optionally INT8) from a shipped ONNX model.

    python -m export.trt_build --onnx engines/models/aqs_effnet_b0.onnx --fp16 --out runs/aqs_effnet_b0.fp16.plan
    python -m export.trt_build --onnx engines/models/aqs_effnet_b0.onnx --fp16 --int8 --data data/dataset \
        --out runs/aqs_effnet_b0.int8.plan

Written against the documented ``tensorrt`` Python API (TensorRT 10: ``Builder``, a network from
``OnnxParser``, ``BuilderConfig`` flags, an optimisation profile for the dynamic batch, and for
INT8 an ``IInt8EntropyCalibrator2`` over training windows; with an already quantised QDQ model the
INT8 flag alone is enough). ``tensorrt`` (and torch, for the calibrator's device buffers) is
imported only when a build runs. TensorRT cannot be installed on the machines this project was
developed on, so this script is untested here; its test skips with that reason.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from engines.contract import INPUT_NAME, INPUT_SHAPE

REPO = Path(__file__).resolve().parent.parent


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(f"TensorRT is not available here ({exc}); install the [gpu] extra on a GPU host") from exc
    return trt


def make_calibrator(windows: np.ndarray, batch: int, cache: Path):
    """An ``IInt8EntropyCalibrator2`` feeding uint8 windows from device memory (torch CUDA tensors)."""
    trt = _tensorrt()
    import torch

    class WindowCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = [windows[i : i + batch] for i in range(0, len(windows) - batch + 1, batch)]
            self.index = 0
            self.device = torch.empty((batch, *INPUT_SHAPE), dtype=torch.uint8, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):  # noqa: ARG002 - one input
            if self.index >= len(self.batches):
                return None
            self.device.copy_(torch.from_numpy(self.batches[self.index]))
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return WindowCalibrator()


def build_engine(onnx_path: Path, out: Path, fp16: bool = True, int8: bool = False, calibration: np.ndarray | None = None,
                 max_batch: int = 32, opt_batch: int = 8, workspace_gb: float = 2.0) -> Path:
    """Parse ``onnx_path``, build for the local GPU and write the serialized engine to ``out``."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *INPUT_SHAPE), (opt_batch, *INPUT_SHAPE), (max_batch, *INPUT_SHAPE))
    config.add_optimization_profile(profile)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        explicit = any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers))
        if not explicit:  # implicit quantisation needs calibration data
            if calibration is None:
                raise ValueError("INT8 from an fp32 model needs calibration windows (--data)")
            config.int8_calibrator = make_calibrator(calibration, min(opt_batch, len(calibration)),
                                                     out.with_suffix(".calib"))
            config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "dataset", help="shards for INT8 calibration")
    parser.add_argument("--calibration-windows", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--opt-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    calibration = None
    if args.int8:
        from export.train import ShardCache

        train = ShardCache(args.data / "train").refresh()
        if train is not None:
            pick = np.sort(np.random.default_rng(args.seed).permutation(len(train))[: args.calibration_windows])
            calibration = train.windows[pick]
    path = build_engine(args.onnx, args.out, fp16=args.fp16, int8=args.int8, calibration=calibration,
                        max_batch=args.max_batch, opt_batch=args.opt_batch)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
