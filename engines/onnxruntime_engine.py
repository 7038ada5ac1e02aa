"""ONNX Runtime backend: TensorRT execution provider > CUDA > CPU, whichever really runs.

``onnxruntime`` is imported inside :func:`load`, so importing this module costs nothing. With the
``onnxruntime-gpu`` build, ``get_available_providers()`` lists TensorRT and CUDA even on a machine
without a GPU and a session then *silently* falls back to CPU; so the engine always reads
``session.get_providers()`` after creating the session and reports (and tunes for) the provider that
actually runs. On CPU the static int8 (QDQ) model is preferred when the CPU has integer dot-product
instructions (:func:`cpu_precisions`), the fp32 one otherwise.

Threads: ``intra_op_num_threads`` defaults to ``max(1, cores - 1)`` so stream decoding keeps a
core; ``inter_op`` 1, sequential execution, all graph optimisations, no spin-waiting (a spinning
pool steals the core the decoders need).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from engines.base import Backend, BaseEngine, EngineInfo, EngineUnavailable, LoadOptions
from engines.contract import INPUT_NAME, INPUT_SHAPE, NUM_ARTIFACTS, OUTPUT_NAMES, ModelOutputs
from engines.modelfiles import ModelFile, find_model_files, read_verified, resolve_model_dir

log = logging.getLogger(__name__)

ENGINE_NAME = "onnxruntime"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER)
CPU_PRECISIONS = ("int8", "fp32")
# Most windows per session run on CPU: ONNX Runtime's arena keeps the activations of the largest
# batch it has run (~28 MB per window for EfficientNet-B0 with its statistics: 597 MB resident at 16),
# while per-window throughput on CPU is no better at 16 than at 4 (measured: benchmarks/README.md).
CPU_RUN_BATCH = 4
# CPU flags (as /proc/cpuinfo spells them) with integer dot products that int8 kernels use
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
GPU_PRECISIONS = ("fp32", "fp16")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Intra-op threads: all cores but one, so decoding keeps a core."""
    return max(1, available_cores() - 1)


class OnnxRuntimeEngine(BaseEngine):
    """A loaded ONNX Runtime session scoring uint8 windows as they are (normalisation is in the graph)."""

    def __init__(self, session: object, model: ModelFile, provider: str) -> None:
        super().__init__(EngineInfo(engine=ENGINE_NAME, model=model.name, provider=provider))
        self.preferred_batch = CPU_RUN_BATCH if provider == CPU_PROVIDER else None
        self._session = session
        self._model = model
        self._output_names = list(OUTPUT_NAMES)

    @property
    def model_file(self) -> ModelFile:
        return self._model

    def _run(self, windows: np.ndarray) -> ModelOutputs:
        if not windows.flags.c_contiguous:  # ORT would copy anyway; say so by doing it once here
            windows = np.ascontiguousarray(windows)
        session = self._session
        if session is None:
            raise RuntimeError("engine is closed")
        step = self.preferred_batch or max(1, windows.shape[0])
        parts = [session.run(self._output_names, {INPUT_NAME: windows[i : i + step]})
                 for i in range(0, windows.shape[0], step)] or [session.run(self._output_names, {INPUT_NAME: windows})]
        quality, logits, intensity = (np.concatenate(p) for p in zip(*parts))
        return ModelOutputs(
            quality=np.asarray(quality, dtype=np.float32).reshape(-1),
            artifact_logits=np.asarray(logits, dtype=np.float32),
            intensity=np.asarray(intensity, dtype=np.float32),
        )

    def close(self) -> None:
        self._session = None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM); empty if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_precisions(flags: frozenset[str]) -> tuple[tuple[str, ...], str]:
    """CPU model precisions in order of preference for a CPU with ``flags``, and why.

    Without integer dot-product instructions ONNX Runtime's x86 int8 kernels multiply with
    VPMADDUBSW, which is no faster than fp32 there and can saturate (its documentation's warning),
    so fp32 comes first.
    """
    found = [flag for flag in INT8_DOT_FLAGS if flag in flags]
    if found:
        return CPU_PRECISIONS, f"int8 first: the CPU has {', '.join(found)}"
    if not flags:
        return CPU_PRECISIONS, "int8 first: the CPU's flags are unknown"
    return ("fp32", "int8"), f"fp32 first: the CPU has none of {', '.join(INT8_DOT_FLAGS)}"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable(f"onnxruntime not installed ({exc})") from None
    return onnxruntime


def _session_options(ort, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A memory pattern is planned and kept per input shape (each batch size the scheduler runs): 48 MB
    # more resident for the default int8 file over batches of 1-4, at the same speed (benchmarks/README.md).
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; provider fall-back is detected and reported by us
    return options


def _provider_list(ort, wanted: tuple[str, ...]) -> list:
    available = set(ort.get_available_providers())
    providers: list = []
    for name in wanted:
        if name not in available:
            continue
        if name == TENSORRT_PROVIDER:
            cache = str(_trt_ep_cache())
            providers.append((name, {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache}))
        else:
            providers.append(name)
    if CPU_PROVIDER not in [p if isinstance(p, str) else p[0] for p in providers]:
        providers.append(CPU_PROVIDER)
    return providers


def _trt_ep_cache() -> Path:
    from engines.modelfiles import cache_dir

    path = cache_dir("ort-trt")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path


def _check_contract(session: object, path: Path) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
        got = ", ".join(f"{i.name}:{i.type}" for i in inputs)
        raise EngineUnavailable(f"{path}: model input is [{got}], expected one uint8 tensor named {INPUT_NAME!r}")
    shape = list(inputs[0].shape)
    if len(shape) != 5 or [d for d in shape[1:]] != list(INPUT_SHAPE):
        raise EngineUnavailable(f"{path}: model input shape {shape}, expected [N, {', '.join(map(str, INPUT_SHAPE))}]")
    names = [o.name for o in session.get_outputs()]
    missing = [name for name in OUTPUT_NAMES if name not in names]
    if missing:
        raise EngineUnavailable(f"{path}: model outputs {names} lack {missing} (contract: {list(OUTPUT_NAMES)}, {NUM_ARTIFACTS} artifacts)")


def _create_session(ort, entry: ModelFile, providers: list, threads: int):
    data = read_verified(entry)  # sha256 checked before ONNX Runtime parses a byte
    try:
        session = ort.InferenceSession(data, sess_options=_session_options(ort, threads), providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types (InvalidProtobuf, Fail...)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "external" in message.lower():
            message += " (ship the model as one self-contained .onnx file: onnx.save(..., save_as_external_data=False))"
        raise EngineUnavailable(f"{entry.path}: ONNX Runtime cannot load it: {message}") from None
    _check_contract(session, entry.path)
    return session


def load(
    model: str,
    model_dir: Path | None = None,
    threads: int | None = None,
    *,
    precision: str | None = None,
    providers: tuple[str, ...] | None = None,
) -> OnnxRuntimeEngine:
    """Load ``model`` (an architecture name such as ``aqs_effnet_b0``) on the best provider that works.

    ``precision`` ("int8", "fp32"...) pins the model file; ``providers`` restricts the execution providers
    (e.g. ``("CPUExecutionProvider",)``). Both default to the automatic choice (for benchmarks and tools).
    """
    ort = _import_onnxruntime()
    directory = resolve_model_dir(model_dir)
    threads = threads if threads and threads > 0 else default_threads()
    allowed = providers or tuple(ort.get_available_providers())
    gpu_wanted = tuple(p for p in GPU_PROVIDERS if p in allowed and p in ort.get_available_providers())

    order, why = ((precision,), f"{precision} asked for") if precision else cpu_precisions(cpu_flags())
    cpu_files = find_model_files(model, "onnx", directory, order)
    gpu_files = find_model_files(model, "onnx", directory, (precision,) if precision else GPU_PRECISIONS)
    if not cpu_files and not gpu_files:
        what = f"{precision} " if precision else ""
        raise EngineUnavailable(f"{directory}: no {what}ONNX file for model {model!r} in the manifest")

    skipped: list[tuple[str, str]] = []
    if gpu_wanted and gpu_files:
        entry = gpu_files[0]
        try:
            session = _create_session(ort, entry, _provider_list(ort, gpu_wanted), threads)
        except EngineUnavailable as exc:
            skipped.append((entry.name, str(exc)))
        else:
            provider = session.get_providers()[0]
            if provider != CPU_PROVIDER or (cpu_files and cpu_files[0].name == entry.name):
                return OnnxRuntimeEngine(session, entry, provider)
            log.info("onnxruntime: %s listed but the session runs on CPU; using the CPU model", "/".join(gpu_wanted))
            del session

    for entry in cpu_files or gpu_files:
        if any(name == entry.name for name, _ in skipped):
            continue  # already failed to load above
        try:
            session = _create_session(ort, entry, [CPU_PROVIDER], threads)
        except EngineUnavailable as exc:  # e.g. int8 file corrupt: the fp32 one may still work
            skipped.append((entry.name, str(exc)))
            continue
        engine = OnnxRuntimeEngine(session, entry, session.get_providers()[0])
        engine.fallbacks = skipped
        log.info("onnxruntime: %s on CPU (%s)", entry.name, why)
        return engine
    raise EngineUnavailable("; ".join(reason for _, reason in skipped))


def _load_for_chain(model: str | None, options: LoadOptions) -> OnnxRuntimeEngine:
    return load(model or "", options.model_dir, options.threads)


BACKEND = Backend(
    name=ENGINE_NAME,
    load=_load_for_chain,
    libraries=("onnxruntime",),
    install_hint="pip install onnxruntime",
)
