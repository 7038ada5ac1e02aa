"""torch backend: the AQS architecture from :mod:`engines.architectures` with shipped plain-tensor weights.

On CUDA this is a real GPU engine: fp16 autocast, channels_last, and one CUDA graph per fixed
batch size (batches are padded up to the next size, so a captured graph is replayed instead of
launching ~300 kernels from Python). On the CPU it runs fp32 eager (channels_last) and exists for
development and parity checks; the default chain skips it there.

Weights come only from a file listed in ``manifest.json`` and checked against its sha256:
``<model>.safetensors`` (preferred) or a ``.pt`` of plain tensors read with
``torch.load(weights_only=True)``. Never an arbitrary pickle.

torch is imported inside :func:`load`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Backend, BaseEngine, EngineInfo, EngineUnavailable, LoadOptions
from engines.contract import INPUT_SHAPE, ModelOutputs
from engines.modelfiles import ModelFile, find_model_files, load_weights, resolve_model_dir

log = logging.getLogger(__name__)

ENGINE_NAME = "torch"
WEIGHT_FORMATS = ("safetensors", "torch-tensors")
# Batch sizes with a captured CUDA graph; larger batches are split.
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
CPU_SKIP_REASON = "no CUDA device; the torch CPU engine is for development, name it in engine.prefer to use it"


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"torch not installed ({exc})") from None
    return torch


def _weights_entry(model: str, model_dir: Path) -> ModelFile:
    for fmt in WEIGHT_FORMATS:
        entries = find_model_files(model, fmt, model_dir, ("fp32", "fp16"))
        if entries:
            return entries[0]
    raise EngineUnavailable(
        f"{model_dir}: no weight file (.safetensors or weights-only .pt) for model {model!r} in the manifest"
    )


def _outputs(result: Any) -> tuple[Any, Any, Any]:
    if isinstance(result, dict):
        return result["quality"], result["artifact_logits"], result["intensity"]
    if hasattr(result, "quality"):
        return result.quality, result.artifact_logits, result.intensity
    quality, logits, intensity = result
    return quality, logits, intensity


class TorchEngine(BaseEngine):
    """AQS model in torch; CPU eager or CUDA (fp16 autocast + channels_last + CUDA graphs)."""

    def __init__(self, torch: Any, module: Any, weights: ModelFile, device: str, use_graphs: bool) -> None:
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        provider = f"{device} ({torch.cuda.get_device_name(self._device)}, fp16)" if self._cuda else "cpu (fp32)"
        super().__init__(EngineInfo(engine=ENGINE_NAME, model=weights.name, provider=provider))
        self._torch = torch
        self._module = module
        self._use_graphs = use_graphs and self._cuda
        self._graphs: dict[int, tuple[Any, Any, tuple[Any, Any, Any]]] = {}
        self._lock = threading.Lock()
        self._stream = torch.cuda.Stream(self._device) if self._cuda else None
        self._pinned: Any = None

    def _run(self, windows: np.ndarray) -> ModelOutputs:
        if self._module is None:
            raise RuntimeError("engine is closed")
        n = windows.shape[0]
        with self._lock:
            if self._cuda:
                parts = [self._infer_cuda(windows[i : i + GRAPH_BATCH_SIZES[-1]]) for i in range(0, n, GRAPH_BATCH_SIZES[-1])]
                quality, logits, intensity = (np.concatenate(p) for p in zip(*parts))
            else:
                quality, logits, intensity = self._infer_cpu(windows)
        return ModelOutputs(quality.reshape(-1), logits, intensity)

    def _infer_cpu(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = _outputs(self._module(torch.from_numpy(np.ascontiguousarray(windows))))
        return tuple(t.float().numpy() for t in out)  # type: ignore[return-value]

    def _infer_cuda(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        n = windows.shape[0]
        size = next(s for s in GRAPH_BATCH_SIZES if s >= n)
        host = self._host_buffer(size)
        host[:n].copy_(torch.from_numpy(np.ascontiguousarray(windows)))
        if n < size:
            host[n:size].zero_()
        with torch.cuda.stream(self._stream):
            if self._use_graphs:
                graph, static_in, static_out = self._graph(size)
                static_in.copy_(host[:size], non_blocking=True)
                graph.replay()
                out = static_out
            else:
                x = host[:size].to(self._device, non_blocking=True)
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                    out = _outputs(self._module(x))
            result = [t[:n].float().to("cpu", non_blocking=False) for t in out]
        self._stream.synchronize()
        return tuple(t.numpy() for t in result)  # type: ignore[return-value]

    def _host_buffer(self, size: int) -> Any:
        torch = self._torch
        if self._pinned is None or self._pinned.shape[0] < size:
            self._pinned = torch.empty((GRAPH_BATCH_SIZES[-1], *INPUT_SHAPE), dtype=torch.uint8).pin_memory()
        return self._pinned

    def _graph(self, size: int) -> tuple[Any, Any, tuple[Any, Any, Any]]:
        if size in self._graphs:
            return self._graphs[size]
        torch = self._torch
        static_in = torch.zeros((size, *INPUT_SHAPE), dtype=torch.uint8, device=self._device)
        with torch.inference_mode():
            # warm-up iterations on the side stream (cuDNN autotuning, lazy init) before capture
            for _ in range(3):
                with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                    _outputs(self._module(static_in))
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                    static_out = _outputs(self._module(static_in))
        self._graphs[size] = (graph, static_in, static_out)
        return self._graphs[size]

    def close(self) -> None:
        self._graphs.clear()
        self._module = None
        self._pinned = None
        if self._cuda:
            self._torch.cuda.empty_cache()


def load(
    model: str,
    model_dir: Path | None = None,
    threads: int | None = None,
    *,
    require_cuda: bool = False,
    device: str | None = None,
    cuda_graphs: bool = True,
) -> TorchEngine:
    """Build ``model`` from :mod:`engines.architectures`, load its verified weights, move it to CUDA if present.

    ``threads``: torch's CPU thread pool (the whole model on the CPU; the host-side copies on CUDA).
    ``require_cuda``: refuse to run on the CPU (the default chain). ``device``: force ``"cpu"`` or ``"cuda:N"``.
    """
    directory = resolve_model_dir(model_dir)
    torch = _import_torch()
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if device is None:
        device = "cuda:0" if cuda else "cpu"
    if cuda and not torch.cuda.is_available():
        raise EngineUnavailable(f"torch {torch.__version__} has no usable CUDA device")
    if require_cuda and not cuda:
        raise EngineUnavailable(f"torch {torch.__version__}: {CPU_SKIP_REASON}")
    entry = _weights_entry(model, directory)
    state = load_weights(entry)  # sha256-verified, plain tensors only
    try:
        from engines.architectures import build_model
    except ImportError as exc:
        raise EngineUnavailable(f"engines.architectures cannot be imported: {exc}") from None
    module = build_model(model)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EngineUnavailable(f"{entry.path}: weights do not fit {model!r}: {first}") from None
    module.eval()
    if threads and threads > 0:
        torch.set_num_threads(threads)
    module = module.to(device=device, memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    return TorchEngine(torch, module, entry, device, use_graphs=cuda_graphs)


def _load_for_chain(model: str | None, options: LoadOptions) -> TorchEngine:
    return load(model or "", options.model_dir, options.threads, require_cuda=options.require_cuda)


BACKEND = Backend(
    name=ENGINE_NAME,
    load=_load_for_chain,
    libraries=("torch",),
    install_hint="pip install torch",
    cpu_skip_reason=CPU_SKIP_REASON,
)
