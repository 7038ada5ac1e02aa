"""Export an AQS torch model to ONNX (opset 18, dynamic batch) and check parity with torch.

    python -m export.export_onnx --model aqs_effnet_b0 --weights runs/aqs_effnet_b0/weights.pt \
        --out engines/models/aqs_effnet_b0.onnx

Without ``--weights`` a seeded, randomly initialised model is exported (the untrained placeholder).
The graph's input is ``windows`` (uint8 ``[N, 7, 3, 224, 224]``), its outputs ``quality``,
``artifact_logits`` and ``intensity`` (see :mod:`engines.contract`).
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from engines.architectures import MODEL_NAMES, build_model
from engines.contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAMES

OPSET = 18
PARITY_ATOL = 1e-4  # max abs difference tolerated between torch and ONNX Runtime fp32


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A model's tensors from a checkpoint written by :mod:`export.train` (plain tensors only, read with
    weights_only=True) or from a shipped ``.safetensors`` file (fp16 there; returned as fp32)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["model"] if "model" in state else state


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    model.load_state_dict(read_state(path))
    return model


def export(model: torch.nn.Module, out: str | Path, batch: int = 2, dynamo: bool = True) -> Path:
    """Write ``model`` (put in eval mode, on CPU) to ``out`` as one self-contained ONNX file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().to(memory_format=torch.contiguous_format)
    example = (torch.zeros((batch, *INPUT_SHAPE), dtype=torch.uint8),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        if dynamo:
            program = torch.onnx.export(
                model, example, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=OPSET,
                dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False,
            )
            program.optimize()
            program.save(str(out), external_data=False)
        else:
            torch.onnx.export(
                model, example, str(out), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                opset_version=OPSET, dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
            )
    return out


def parity(model: torch.nn.Module, onnx_path: str | Path, windows: np.ndarray) -> dict[str, float]:
    """Max abs difference per output between torch and ONNX Runtime (CPU) on ``windows``."""
    import onnxruntime as ort

    model = model.eval().cpu()
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(windows))]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: windows})
    return {name: float(np.max(np.abs(e - g))) for name, e, g in zip(OUTPUT_NAMES, expected, got)}


def save_fp16_safetensors(model: torch.nn.Module, out: str | Path) -> Path:
    """Plain fp16 tensors for the torch engine (it runs fp16 on CUDA; on CPU they load into fp32).
    The classical statistics' scaling stays fp32: fp16 would shift the z-scores of large-valued features."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() and not k.startswith("statistics_") else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out))
    return Path(out)


def seeded_model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_NAMES, required=True)
    parser.add_argument("--weights", help="checkpoint from export.train (default: seeded random init)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legacy", action="store_true", help="TorchScript exporter instead of dynamo")
    parser.add_argument("--parity-windows", help="npz shard whose 'windows' are used for the parity check")
    parser.add_argument("--safetensors", help="also write the weights here as fp16 safetensors (torch engine)")
    args = parser.parse_args(argv)

    model = seeded_model(args.model, args.seed)
    if args.weights:
        load_weights(model, args.weights)
    path = export(model, args.out, dynamo=not args.legacy)
    if args.safetensors:
        save_fp16_safetensors(model, args.safetensors)
    if args.parity_windows:
        windows = np.load(args.parity_windows)["windows"][:4]
    else:
        windows = np.random.default_rng(args.seed).integers(0, 256, (3, *INPUT_SHAPE), dtype=np.uint8)
    diffs = parity(model, path, windows)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, max abs diff vs torch: "
          + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    if max(diffs.values()) > PARITY_ATOL:
        print(f"parity check failed (> {PARITY_ATOL})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
