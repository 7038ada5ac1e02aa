"""The fallback chain: try engines fastest first, say why each one was passed over, return the first that works.

    from engines.chain import select_engine
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "classical"])
    selection.engine    # an engines.base.Engine, already warmed up
    selection.skipped   # [Skipped(spec, reason), ...] for every engine tried before it

A preference entry is ``backend[:model]``: backend in :data:`KNOWN_BACKENDS`, model in
:data:`KNOWN_MODELS` (default :data:`DEFAULT_MODEL`; ``classical`` takes none). Validate user input
with :func:`parse_spec` / :func:`parse_preference` (``ValueError`` with a clear message).

Importing this module imports no inference library: each backend imports its own inside ``load``,
and the GPU backends are skipped without importing anything when the machine has no NVIDIA device
or the library is not installed. A CPU-only install therefore never loads CUDA libraries.
"""
from __future__ import annotations

import glob
import importlib
import importlib.util
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engines.base import Engine, EngineUnavailable

log = logging.getLogger(__name__)

KNOWN_BACKENDS: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch", "classical")
KNOWN_MODELS: tuple[str, ...] = ("aqs_effnet_b0", "aqs_effnet_lite0", "aqs_mnv3_small")
DEFAULT_MODEL = "aqs_effnet_b0"
NO_MODEL_BACKENDS = frozenset({"classical"})

# Fastest first. torch is in the default chain only for CUDA: on a CPU it is skipped (see below).
DEFAULT_PREFERENCE: tuple[str, ...] = (
    "tensorrt:aqs_effnet_b0",
    "torch:aqs_effnet_b0",
    "onnxruntime:aqs_effnet_b0",
    "onnxruntime:aqs_mnv3_small",
    "classical",
)

TORCH_CPU_SKIP_REASON = (
    "no CUDA device; the torch CPU engine is for development, name it in engine.prefer to use it"
)

_MODULES = {
    "tensorrt": "engines.tensorrt_engine",
    "onnxruntime": "engines.onnxruntime_engine",
    "torch": "engines.torch_engine",
    "classical": "engines.classical",
}
# The library each backend needs, checked with find_spec (no import) before trying it.
_LIBRARIES = {"tensorrt": ("tensorrt",), "onnxruntime": ("onnxruntime",), "torch": ("torch",), "classical": ()}
_GPU_ONLY = frozenset({"tensorrt"})
_INSTALL_HINT = {
    "tensorrt": "pip install 'vqa-monitor[gpu]' on a GPU host",
    "torch": "pip install torch",
    "onnxruntime": "pip install onnxruntime",
}


@dataclass(frozen=True)
class Spec:
    """A parsed preference entry."""

    backend: str
    model: str | None  # None for backends without a model (classical)

    def __str__(self) -> str:
        return self.backend if self.model is None else f"{self.backend}:{self.model}"


@dataclass(frozen=True)
class Skipped:
    """An engine the chain passed over, and why."""

    spec: str
    reason: str

    def __str__(self) -> str:
        return f"{self.spec}: {self.reason}"


@dataclass
class Selection:
    """The chosen engine (warmed up), the spec it came from, and everything skipped before it."""

    engine: Engine
    skipped: list[Skipped] = field(default_factory=list)
    spec: str = ""
    load_seconds: float = 0.0


def parse_spec(text: str) -> Spec:
    """``"backend[:model]"`` -> :class:`Spec`; ``ValueError`` naming the bad part and the allowed values."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"engine preference entry {text!r} is empty; expected 'backend[:model]'")
    backend, sep, model = text.strip().partition(":")
    backend = backend.strip().lower()
    model = model.strip()
    if backend not in KNOWN_BACKENDS:
        raise ValueError(
            f"unknown engine backend {backend!r} in {text!r}; expected one of {', '.join(KNOWN_BACKENDS)}"
        )
    if backend in NO_MODEL_BACKENDS:
        if sep and model:
            raise ValueError(f"engine backend {backend!r} takes no model, got {text!r}")
        return Spec(backend, None)
    if sep and not model:
        raise ValueError(f"engine preference {text!r} has an empty model name; expected one of {', '.join(KNOWN_MODELS)}")
    model = model or DEFAULT_MODEL
    if model not in KNOWN_MODELS:
        raise ValueError(f"unknown model {model!r} in {text!r}; expected one of {', '.join(KNOWN_MODELS)}")
    return Spec(backend, model)


def parse_preference(preference: Sequence[str] | str | None) -> list[Spec]:
    """Validate a whole preference list (a single string is one entry); ``None`` gives the default chain."""
    if preference is None:
        return [parse_spec(s) for s in DEFAULT_PREFERENCE]
    if isinstance(preference, str):
        preference = [preference]
    specs = [parse_spec(s) for s in preference]
    if not specs:
        raise ValueError("engine preference list is empty; name at least one engine (e.g. 'classical')")
    return specs


def cuda_device_present() -> bool:
    """Whether an NVIDIA device is visible, decided without importing any CUDA library."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/proc/driver/nvidia/version")


def library_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module blocked as sys.modules[name] = None, or a broken one
        return False


def _precheck(spec: Spec, *, default_chain: bool) -> str | None:
    """A reason to skip ``spec`` without importing anything, or None to try loading it."""
    missing = [lib for lib in _LIBRARIES[spec.backend] if not library_installed(lib)]
    reasons = []
    if missing:
        reasons.append(f"{', '.join(missing)} not installed ({_INSTALL_HINT.get(spec.backend, 'install it')})")
    if spec.backend in _GPU_ONLY and not cuda_device_present():
        reasons.append("no CUDA device")
    if spec.backend == "torch" and default_chain and not missing and not cuda_device_present():
        return TORCH_CPU_SKIP_REASON
    return "; ".join(reasons) or None


def _loader(backend: str) -> Callable[..., Engine]:
    module = importlib.import_module(_MODULES[backend])
    return module.load  # type: ignore[no-any-return]


def load_spec(
    spec: Spec | str, *, model_dir: Path | None = None, threads: int | None = None, require_cuda: bool = False
) -> Engine:
    """Load one engine (no pre-checks, no warm-up). Raises EngineUnavailable.

    ``require_cuda`` makes the torch backend refuse to run on the CPU (as in the default chain)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    try:
        load = _loader(spec.backend)
    except ImportError as exc:
        raise EngineUnavailable(f"{_MODULES[spec.backend]} cannot be imported: {exc}") from None
    if spec.backend == "classical":
        return load(model_dir=model_dir) if model_dir is not None else load()
    if spec.backend == "torch":
        return load(spec.model, model_dir, threads, require_cuda=require_cuda)
    return load(spec.model, model_dir, threads)


def select_engine(
    preference: Sequence[str] | None = None,
    *,
    model_dir: Path | None = None,
    threads: int | None = None,
    warm_up_batch: int = 1,
) -> Selection:
    """Try each entry of ``preference`` (default :data:`DEFAULT_PREFERENCE`) in order; return the first that loads
    and survives a warm-up batch. Raises EngineUnavailable listing every reason when none does."""
    specs = parse_preference(preference)
    # The default chain (None, or the same list spelled out) runs torch only on CUDA; a user who names
    # torch in their own list gets the CPU engine too.
    default_chain = preference is None or [str(s) for s in specs] == list(DEFAULT_PREFERENCE)
    skipped: list[Skipped] = []
    for spec in specs:
        name = str(spec)
        reason = _precheck(spec, default_chain=default_chain)
        if reason is not None:
            skipped.append(Skipped(name, reason))
            log.debug("engine %s skipped: %s", name, reason)
            continue
        started = time.monotonic()
        try:
            engine = load_spec(spec, model_dir=model_dir, threads=threads, require_cuda=default_chain)
        except EngineUnavailable as exc:
            skipped.append(Skipped(name, str(exc)))
            log.debug("engine %s skipped: %s", name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a backend bug or library error must not stop the chain
            skipped.append(Skipped(name, f"load error: {type(exc).__name__}: {exc}"))
            log.debug("engine %s failed to load", name, exc_info=True)
            continue
        try:
            engine.warm_up(warm_up_batch)
        except Exception as exc:  # noqa: BLE001
            skipped.append(Skipped(name, f"warm-up failed: {type(exc).__name__}: {exc}"))
            _close_quietly(engine)
            continue
        for file_name, file_reason in getattr(engine, "fallbacks", ()) or ():
            skipped.append(Skipped(f"{name} [{file_name}]", file_reason))
        return Selection(engine=engine, skipped=skipped, spec=name, load_seconds=time.monotonic() - started)
    details = "; ".join(str(s) for s in skipped)
    raise EngineUnavailable(f"no inference engine could be loaded: {details}")


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001
        log.debug("closing a failed engine raised", exc_info=True)
