"""TensorRT backend: build an engine from the shipped ONNX for the local GPU, cache it, reuse it.

UNTESTED HERE: TensorRT cannot be installed on the development machines nor on the GPU machines
available to this project, so this file is written against the documented TensorRT (10.x) Python
API - ``Builder`` / ``OnnxParser`` / ``IBuilderConfig`` / ``IOptimizationProfile`` /
``Runtime.deserialize_cuda_engine`` / ``IExecutionContext.execute_async_v3`` - and has never run.
Its tests skip with that reason.

* Precision: the static int8 (QDQ, explicitly quantised) ONNX when the manifest ships one, built with
  the INT8 and FP16 flags (layers without Q/DQ run in FP16); otherwise the fp32 ONNX built in FP16.
* Dynamic batch 1..``MAX_BATCH`` in one optimisation profile.
* Cache: ``<cache>/trt/<model>-<key>.engine`` plus a JSON sidecar holding the key (GPU name, compute
  capability, TensorRT version, ONNX sha256, precision, batch profile) and the engine's own sha256.
  A cached engine is deserialised only when its sidecar key equals the current key and the engine
  file's sha256 equals the one recorded when this program wrote it; anything else is rebuilt. Cache
  folder: ``$VQA_MONITOR_CACHE_DIR``, systemd's ``$CACHE_DIRECTORY`` / ``$STATE_DIRECTORY``, or
  ``~/.cache/vqa-monitor`` (see :func:`engines.modelfiles.cache_dir`).
* Device buffers and the CUDA stream come from torch (installed with the ``gpu`` extra through
  torch-tensorrt). ``tensorrt`` and ``torch`` are imported inside :func:`load`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Backend, BaseEngine, EngineInfo, EngineUnavailable, LoadOptions
from engines.contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAMES, ModelOutputs
from engines.modelfiles import ModelFile, cache_dir, find_model_files, read_verified, resolve_model_dir, sha256_bytes

log = logging.getLogger(__name__)

ENGINE_NAME = "tensorrt"
MAX_BATCH = 32
OPT_BATCH = 8
WORKSPACE_BYTES = 1 << 30
CACHE_FORMAT = 1
UNTESTED_REASON = (
    "TensorRT is not installable on this project's machines (CPU dev boxes, and GPU machines without "
    "the tensorrt package): the TensorRT engine is written against the documented API and untested"
)
INSTALL_HINT = "pip install 'vqa-monitor[gpu]' on a GPU host"


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailable(f"tensorrt not installed ({exc}); {INSTALL_HINT}") from None
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"the TensorRT engine needs torch for CUDA buffers ({exc})") from None
    if not torch.cuda.is_available():
        raise EngineUnavailable("no CUDA device visible to torch")
    return trt, torch


def cache_key(gpu_name: str, capability: tuple[int, int], trt_version: str, onnx_sha256: str, precision: str) -> dict:
    """Everything an engine plan depends on; a cached plan is reused only when this matches exactly."""
    return {
        "format": CACHE_FORMAT,
        "gpu": gpu_name,
        "compute_capability": f"{capability[0]}.{capability[1]}",
        "tensorrt": trt_version,
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "batch": [1, OPT_BATCH, MAX_BATCH],
        "input": [INPUT_NAME, *INPUT_SHAPE],
    }


def cache_paths(directory: Path, model_name: str, key: dict) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    stem = f"{model_name}-{digest}"
    return directory / f"{stem}.engine", directory / f"{stem}.json"


def read_cached_plan(engine_path: Path, sidecar_path: Path, key: dict) -> bytes | None:
    """The cached plan's bytes when its sidecar proves this program built it for ``key``, else None."""
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        plan = engine_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("key") != key:
        log.warning("tensorrt: cache %s was built for another GPU/TensorRT/model; rebuilding", engine_path)
        return None
    if sidecar.get("engine_sha256") != sha256_bytes(plan):
        log.warning("tensorrt: cache %s does not match its sidecar sha256; rebuilding", engine_path)
        return None
    return plan


def write_cached_plan(engine_path: Path, sidecar_path: Path, key: dict, plan: bytes) -> None:
    """Engine first, then the sidecar (which is what makes the engine trusted), each atomically."""
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((engine_path, plan), (sidecar_path, json.dumps({"key": key, "engine_sha256": sha256_bytes(plan)},
                                                                       indent=2, sort_keys=True).encode())):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def build_plan(trt: Any, onnx_bytes: bytes, onnx_path: Path, precision: str) -> bytes:
    """Parse the ONNX and build a serialised engine (FP16; INT8 too for a Q/DQ model)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineUnavailable(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if hasattr(trt.BuilderFlag, "FP16") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation: scales come from the Q/DQ nodes
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *INPUT_SHAPE), (OPT_BATCH, *INPUT_SHAPE), (MAX_BATCH, *INPUT_SHAPE))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineUnavailable(f"{onnx_path}: TensorRT engine build failed ({precision})")
    return bytes(plan)


class TensorRTEngine(BaseEngine):
    """A deserialised TensorRT engine with torch-allocated device buffers for the largest batch."""

    def __init__(self, trt: Any, torch: Any, plan: bytes, onnx: ModelFile, precision: str) -> None:
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise EngineUnavailable(f"tensorrt: cached or built engine for {onnx.path} could not be deserialised")
        self._context = self._engine.create_execution_context()
        self._device = torch.device("cuda:0")
        self._stream = torch.cuda.Stream(self._device)
        self._lock = threading.Lock()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.UINT8: torch.uint8}
        self._buffers: dict[str, Any] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = dtypes.get(self._engine.get_tensor_dtype(name))
            if dtype is None:
                raise EngineUnavailable(f"tensorrt: unsupported dtype for tensor {name!r}")
            if name == INPUT_NAME:
                shape: tuple[int, ...] = (MAX_BATCH, *INPUT_SHAPE)
            elif name == "quality":
                shape = (MAX_BATCH,)
            else:
                shape = (MAX_BATCH, 10)
            self._buffers[name] = torch.empty(shape, dtype=dtype, device=self._device)
        missing = [n for n in (INPUT_NAME, *OUTPUT_NAMES) if n not in self._buffers]
        if missing:
            raise EngineUnavailable(f"tensorrt: engine for {onnx.path} lacks tensors {missing}")
        self._host_in = torch.empty((MAX_BATCH, *INPUT_SHAPE), dtype=torch.uint8).pin_memory()
        gpu = torch.cuda.get_device_name(self._device)
        super().__init__(EngineInfo(engine=ENGINE_NAME, model=onnx.name, provider=f"cuda:0 ({gpu}, {precision})"))

    def _run(self, windows: np.ndarray) -> ModelOutputs:
        if self._context is None:
            raise RuntimeError("engine is closed")
        parts = [self._infer_chunk(windows[i : i + MAX_BATCH]) for i in range(0, windows.shape[0], MAX_BATCH)]
        quality, logits, intensity = (np.concatenate(p) for p in zip(*parts))
        return ModelOutputs(quality.reshape(-1), logits, intensity)

    def _infer_chunk(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        n = windows.shape[0]
        with self._lock, torch.cuda.stream(self._stream):
            self._host_in[:n].copy_(torch.from_numpy(np.ascontiguousarray(windows)))
            self._buffers[INPUT_NAME][:n].copy_(self._host_in[:n], non_blocking=True)
            self._context.set_input_shape(INPUT_NAME, (n, *INPUT_SHAPE))
            for name, buffer in self._buffers.items():
                self._context.set_tensor_address(name, buffer.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed")
            outs = [self._buffers[name][:n].float().cpu() for name in OUTPUT_NAMES]
            self._stream.synchronize()
        return tuple(t.numpy() for t in outs)  # type: ignore[return-value]

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._buffers.clear()


def load(model: str, model_dir: Path | None = None) -> TensorRTEngine:
    """Build (or reuse from the cache) a TensorRT engine for ``model`` on cuda:0.

    It takes no thread count: the whole network runs on the GPU."""
    trt, torch = _import_tensorrt()
    directory = resolve_model_dir(model_dir)
    candidates = find_model_files(model, "onnx", directory, ("int8", "fp32"))
    if not candidates:
        raise EngineUnavailable(f"{directory}: no ONNX file for model {model!r} in the manifest")
    gpu = torch.cuda.get_device_name(0)
    capability = torch.cuda.get_device_capability(0)
    folder = cache_dir("trt")
    errors: list[str] = []
    for entry in candidates:
        precision = "int8" if entry.precision == "int8" else "fp16"
        try:
            onnx_bytes = read_verified(entry)
            key = cache_key(gpu, capability, trt.__version__, entry.sha256, precision)
            engine_path, sidecar_path = cache_paths(folder, entry.path.stem, key)
            plan = read_cached_plan(engine_path, sidecar_path, key)
            if plan is None:
                log.info("tensorrt: building %s engine for %s on %s (minutes, once)", precision, entry.name, gpu)
                plan = build_plan(trt, onnx_bytes, entry.path, precision)
                try:
                    write_cached_plan(engine_path, sidecar_path, key, plan)
                except OSError as exc:
                    log.warning("tensorrt: cannot cache the engine in %s: %s", folder, exc)
            return TensorRTEngine(trt, torch, plan, entry, precision)
        except EngineUnavailable as exc:
            errors.append(str(exc))
    raise EngineUnavailable("; ".join(errors))


def _load_for_chain(model: str | None, options: LoadOptions) -> TensorRTEngine:
    return load(model or "", options.model_dir)


BACKEND = Backend(
    name=ENGINE_NAME,
    load=_load_for_chain,
    libraries=("tensorrt",),
    install_hint=INSTALL_HINT,
    gpu_only=True,
    takes_threads=False,
    selected_warning="this engine has never run on real hardware (no TensorRT on the machines it was developed "
    "on); compare its scores with onnxruntime or torch on the same clip (vqa-monitor bench) before trusting them",
)
