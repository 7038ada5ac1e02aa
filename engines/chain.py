"""The fallback chain: try engines fastest first, say why each one was passed over, return the first that works.

    from engines.chain import select_engine
    selection = select_engine(["onnxruntime:aqs_effnet_b0", "classical"])
    selection.engine    # an engines.base.Engine, already warmed up
    selection.skipped   # [Skipped(spec, reason), ...] for every engine tried before it

A preference entry is ``backend[:model]``: backend in :data:`KNOWN_BACKENDS`, model in
:data:`KNOWN_MODELS` (default :data:`DEFAULT_MODEL`; a backend that takes no model, ``classical``,
takes none). Validate user input with :func:`parse_spec` / :func:`parse_preference` (``ValueError``
with a clear message).

The backends are the modules in :data:`BACKEND_MODULES`; each declares itself once as ``BACKEND``
(an :class:`engines.base.Backend`). Importing this module imports no inference library: each backend
imports its own inside ``load``, and a backend is skipped without importing anything when its library
is not installed or, for a GPU-only one, the machine has no NVIDIA device. A CPU-only install
therefore never loads CUDA libraries.
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
from typing import Sequence

from engines.architectures import MODEL_NAMES
from engines.base import Backend, BaseEngine, Engine, EngineUnavailable, LoadOptions

log = logging.getLogger(__name__)

# Where the backends live; this order is the order KNOWN_BACKENDS lists them in.
BACKEND_MODULES: tuple[str, ...] = (
    "engines.tensorrt_engine",
    "engines.onnxruntime_engine",
    "engines.torch_engine",
    "engines.classical",
)


def _discover(module_names: Sequence[str]) -> dict[str, Backend]:
    backends = [importlib.import_module(name).BACKEND for name in module_names]
    return {backend.name: backend for backend in backends}


BACKENDS: dict[str, Backend] = _discover(BACKEND_MODULES)
KNOWN_BACKENDS: tuple[str, ...] = tuple(BACKENDS)
KNOWN_MODELS: tuple[str, ...] = MODEL_NAMES
DEFAULT_MODEL = "aqs_effnet_b0"

# Fastest first. torch runs in the default chain only on CUDA (see Backend.cpu_skip_reason).
# TensorRT stays first although it has never run on real hardware: it is reached only on a machine with
# an NVIDIA device and the gpu extra installed, a build or warm-up failure falls through to torch with
# the reason logged, and selecting it logs a warning (Backend.selected_warning).
DEFAULT_PREFERENCE: tuple[str, ...] = (
    "tensorrt:aqs_effnet_b0",
    "torch:aqs_effnet_b0",
    "onnxruntime:aqs_effnet_b0",
    "onnxruntime:aqs_mnv3_small",
    "classical",
)


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
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown engine backend {backend!r} in {text!r}; expected one of {', '.join(KNOWN_BACKENDS)}"
        )
    if not BACKENDS[backend].takes_model:
        if sep and model:
            raise ValueError(f"engine backend {backend!r} takes no model, got {text!r}")
        return Spec(backend, None)
    if sep and not model:
        raise ValueError(f"engine preference {text!r} has an empty model name; expected one of {', '.join(KNOWN_MODELS)}")
    model = model or DEFAULT_MODEL
    if model not in KNOWN_MODELS:
        raise ValueError(f"unknown model {model!r} in {text!r}; expected one of {', '.join(KNOWN_MODELS)}")
    return Spec(backend, model)


def parse_preference(preference: Sequence[str] | str | None, *, threads: int | None = None) -> list[Spec]:
    """Validate a whole preference list (a single string is one entry); ``None`` gives the default chain.

    With ``threads`` set, a named backend that takes no thread count is refused (see :func:`check_threads`)."""
    if preference is None:
        return [parse_spec(s) for s in DEFAULT_PREFERENCE]
    if isinstance(preference, str):
        preference = [preference]
    specs = [parse_spec(s) for s in preference]
    if not specs:
        raise ValueError("engine preference list is empty; name at least one engine (e.g. 'classical')")
    check_threads(specs, threads)
    return specs


def check_threads(specs: Sequence[Spec], threads: int | None) -> None:
    """ValueError when ``threads`` is set and a backend in ``specs`` takes no thread count.

    Only for a list the user wrote: in the default chain the thread count is for the engines that
    run on the CPU."""
    if threads is None:
        return
    ignoring = list(dict.fromkeys(s.backend for s in specs if not BACKENDS[s.backend].takes_threads))
    if ignoring:
        names = ", ".join(ignoring)
        raise ValueError(
            f"{names} takes no thread count (it runs on the GPU); leave threads unset (null) or drop {names} "
            "from the engine list"
        )


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


def _precheck(backend: Backend, *, default_chain: bool) -> str | None:
    """A reason to skip ``backend`` without importing anything, or None to try loading it."""
    missing = [lib for lib in backend.libraries if not library_installed(lib)]
    reasons = []
    if missing:
        reasons.append(f"{', '.join(missing)} not installed ({backend.install_hint})")
    if backend.gpu_only and not cuda_device_present():
        reasons.append("no CUDA device")
    if backend.cpu_skip_reason and default_chain and not missing and not cuda_device_present():
        return backend.cpu_skip_reason
    return "; ".join(reasons) or None


def load_spec(
    spec: Spec | str, *, model_dir: Path | None = None, threads: int | None = None, require_cuda: bool = False
) -> BaseEngine:
    """Load one engine (no pre-checks, no warm-up). Raises EngineUnavailable.

    ``threads`` goes to backends that take a thread count. ``require_cuda`` makes a backend with a CPU mode
    for development (torch) refuse to run on the CPU, as in the default chain."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    backend = BACKENDS[spec.backend]
    options = LoadOptions(model_dir=model_dir, threads=threads if backend.takes_threads else None,
                          require_cuda=require_cuda)
    return backend.load(spec.model, options)


def select_engine(
    preference: Sequence[str] | None = None,
    *,
    model_dir: Path | None = None,
    threads: int | None = None,
    warm_up_batch: int = 1,
) -> Selection:
    """Try each entry of ``preference`` (default :data:`DEFAULT_PREFERENCE`) in order; return the first that loads
    and survives a warm-up batch. Raises EngineUnavailable listing every reason when none does, ValueError for
    an invalid ``preference`` (or ``threads`` with a backend that takes none)."""
    specs = parse_preference(preference, threads=threads)
    # The default chain (None, or the same list spelled out) runs torch only on CUDA; a user who names
    # torch in their own list gets the CPU engine too.
    default_chain = preference is None or [str(s) for s in specs] == list(DEFAULT_PREFERENCE)
    skipped: list[Skipped] = []
    for spec in specs:
        started = time.monotonic()
        engine = _try(spec, skipped, default_chain=default_chain, model_dir=model_dir, threads=threads,
                      warm_up_batch=warm_up_batch)
        if engine is None:
            continue
        name = str(spec)
        skipped.extend(Skipped(f"{name} [{file_name}]", reason) for file_name, reason in engine.fallbacks)
        backend = BACKENDS[spec.backend]
        _warn_once(backend)
        if threads is not None and not backend.takes_threads:
            log.info("engine %s takes no thread count: threads=%d applies to the chain's CPU engines only", name, threads,
                     extra={"event": "engine_threads_unused", "engine": backend.name})
        return Selection(engine=engine, skipped=skipped, spec=name, load_seconds=time.monotonic() - started)
    details = "; ".join(str(s) for s in skipped)
    raise EngineUnavailable(f"no inference engine could be loaded: {details}")


def _try(spec: Spec, skipped: list[Skipped], *, default_chain: bool, model_dir: Path | None, threads: int | None,
         warm_up_batch: int) -> BaseEngine | None:
    """The loaded, warmed-up engine of ``spec``, or None after appending why it was passed over to ``skipped``."""
    name = str(spec)
    backend = BACKENDS[spec.backend]
    reason = _precheck(backend, default_chain=default_chain)
    if reason is not None:
        skipped.append(Skipped(name, reason))
        log.debug("engine %s skipped: %s", name, reason)
        return None
    require_cuda = default_chain and backend.cpu_skip_reason is not None
    try:
        engine = load_spec(spec, model_dir=model_dir, threads=threads, require_cuda=require_cuda)
    except EngineUnavailable as exc:
        skipped.append(Skipped(name, str(exc)))
        log.debug("engine %s skipped: %s", name, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a backend bug or library error must not stop the chain
        skipped.append(Skipped(name, f"load error: {type(exc).__name__}: {exc}"))
        log.debug("engine %s failed to load", name, exc_info=True)
        return None
    try:
        engine.warm_up(warm_up_batch)
    except Exception as exc:  # noqa: BLE001
        skipped.append(Skipped(name, f"warm-up failed: {type(exc).__name__}: {exc}"))
        _close_quietly(engine)
        return None
    return engine


_warned: set[str] = set()


def _warn_once(backend: Backend) -> None:
    if backend.selected_warning and backend.name not in _warned:
        _warned.add(backend.name)
        log.warning("engine %s selected: %s", backend.name, backend.selected_warning,
                    extra={"event": "engine_warning", "engine": backend.name})


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001
        log.debug("closing a failed engine raised", exc_info=True)
