"""Model files: where they are, which ones exist, and proof that they are the ones we shipped.

Every file an engine loads is listed in ``manifest.json`` next to it::

    {"files": {"aqs_effnet_b0.onnx": {"sha256": "...", "architecture": "aqs_effnet_b0", "precision": "fp32"}}}

and is checked against that sha256 *before* any library parses it: a missing, truncated, flipped or
replaced file becomes :class:`~engines.base.EngineUnavailable` naming the path and the reason, and the
fallback chain moves on. To avoid a check-then-load race the verified bytes themselves are handed to
the loader (ONNX Runtime and TensorRT accept bytes; safetensors parses bytes).

Only three kinds of file are ever loaded: ONNX graphs, plain weight tensors (safetensors, or
``torch.load(weights_only=True)``), and TensorRT engines this program built itself (recognised by the
key sidecar written next to them, see :mod:`engines.tensorrt_engine`). Nothing here unpickles
arbitrary objects.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import EngineUnavailable

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
# File kinds by suffix; anything else in the manifest is ignored by the engines.
FORMATS = {".onnx": "onnx", ".safetensors": "safetensors", ".pt": "torch-tensors", ".pth": "torch-tensors"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One manifest entry, resolved to a path (not yet verified)."""

    path: Path
    sha256: str
    architecture: str
    precision: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def format(self) -> str:
        return FORMATS.get(self.path.suffix.lower(), "unknown")


def resolve_model_dir(model_dir: Path | str | None) -> Path:
    """``model_dir`` or the package's ``engines/models/``."""
    return Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(model_dir: Path | str | None = None) -> dict[str, ModelFile]:
    """All entries of ``manifest.json``, keyed by file name. Raises EngineUnavailable if unusable."""
    directory = resolve_model_dir(model_dir)
    manifest_path = directory / MANIFEST_NAME
    try:
        raw = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EngineUnavailable(f"{manifest_path}: model manifest missing") from None
    except OSError as exc:
        raise EngineUnavailable(f"{manifest_path}: cannot read model manifest: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EngineUnavailable(f"{manifest_path}: model manifest is not valid JSON: {exc}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise EngineUnavailable(f"{manifest_path}: model manifest has no 'files' object")
    entries: dict[str, ModelFile] = {}
    for name, meta in files.items():
        if not isinstance(meta, dict) or not _is_sha256(meta.get("sha256")):
            raise EngineUnavailable(f"{manifest_path}: entry {name!r} has no valid sha256")
        if Path(name).name != name:
            raise EngineUnavailable(f"{manifest_path}: entry {name!r} must be a plain file name")
        entries[name] = ModelFile(
            path=directory / name,
            sha256=str(meta["sha256"]).lower(),
            architecture=str(meta.get("architecture", "")),
            precision=str(meta.get("precision", "fp32")),
        )
    return entries


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def find_model_files(
    architecture: str, fmt: str, model_dir: Path | str | None = None, precisions: tuple[str, ...] | None = None
) -> list[ModelFile]:
    """Manifest entries of ``architecture`` in format ``fmt``, ordered as ``precisions`` (if given)."""
    entries = [
        entry
        for entry in read_manifest(model_dir).values()
        if entry.architecture == architecture and entry.format == fmt
    ]
    if precisions is not None:
        entries = [entry for entry in entries if entry.precision in precisions]
        entries.sort(key=lambda entry: precisions.index(entry.precision))
    return entries


def find_model_file(
    architecture: str, fmt: str, model_dir: Path | str | None = None, precisions: tuple[str, ...] = ("fp32",)
) -> ModelFile:
    """The first manifest entry for ``architecture``/``fmt`` in ``precisions`` order, or EngineUnavailable."""
    entries = find_model_files(architecture, fmt, model_dir, precisions)
    if not entries:
        directory = resolve_model_dir(model_dir)
        wanted = "/".join(precisions)
        raise EngineUnavailable(
            f"{directory / MANIFEST_NAME}: no {fmt} file for model {architecture!r} ({wanted}) in the manifest"
        )
    return entries[0]


def read_verified(entry: ModelFile) -> bytes:
    """The file's bytes, after checking them against the manifest sha256 (EngineUnavailable otherwise)."""
    return read_verified_path(entry.path, entry.sha256)


def read_verified_path(path: Path, expected_sha256: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise EngineUnavailable(f"{path}: model file missing") from None
    except IsADirectoryError:
        raise EngineUnavailable(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise EngineUnavailable(f"{path}: cannot read model file: {exc.strerror or exc}") from None
    actual = sha256_bytes(data)
    if actual != expected_sha256.lower():
        raise EngineUnavailable(
            f"{path}: sha256 mismatch (expected {expected_sha256[:16]}..., got {actual[:16]}..., "
            f"{len(data)} bytes): the file is corrupt, truncated or was replaced; refusing to load it"
        )
    return data


def verify(entry: ModelFile) -> None:
    """Check one entry's file on disk without keeping its bytes."""
    try:
        actual = sha256_file(entry.path)
    except FileNotFoundError:
        raise EngineUnavailable(f"{entry.path}: model file missing") from None
    except OSError as exc:
        raise EngineUnavailable(f"{entry.path}: cannot read model file: {exc.strerror or exc}") from None
    if actual != entry.sha256:
        raise EngineUnavailable(
            f"{entry.path}: sha256 mismatch (expected {entry.sha256[:16]}..., got {actual[:16]}...): "
            "the file is corrupt, truncated or was replaced; refusing to load it"
        )


def load_weights(entry: ModelFile) -> dict[str, Any]:
    """A verified state dict of plain tensors: safetensors, or torch.load(weights_only=True). Needs torch."""
    data = read_verified(entry)
    if entry.format == "safetensors":
        try:
            from safetensors.torch import load as load_safetensors
        except ImportError as exc:
            raise EngineUnavailable(f"safetensors not installed, cannot read {entry.path}: {exc}") from None
        try:
            return dict(load_safetensors(data))
        except Exception as exc:  # noqa: BLE001 - any parse failure means the file is unusable
            raise EngineUnavailable(f"{entry.path}: not a valid safetensors file: {exc}") from None
    if entry.format == "torch-tensors":
        import io

        import torch

        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise EngineUnavailable(f"{entry.path}: not a plain tensor file (weights_only load failed): {exc}") from None
        if not isinstance(state, dict):
            raise EngineUnavailable(f"{entry.path}: expected a dict of tensors, got {type(state).__name__}")
        return state
    raise EngineUnavailable(f"{entry.path}: {entry.format} is not a weight format this program loads")


def cache_dir(kind: str) -> Path:
    """A writable cache folder for built artefacts (TensorRT engines): env override, systemd, then ~/.cache."""
    override = os.environ.get("VQA_MONITOR_CACHE_DIR")
    if override:
        base = Path(override)
    elif os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        base = Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    elif os.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
        base = Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vqa-monitor"
    return base / kind


def write_manifest(model_dir: Path, entries: dict[str, dict[str, str]]) -> Path:
    """Write ``manifest.json`` for files already in ``model_dir`` (sha256 computed here). For tools and tests."""
    files = {}
    for name, meta in sorted(entries.items()):
        files[name] = {"sha256": sha256_file(model_dir / name), **{k: v for k, v in meta.items() if k != "sha256"}}
    path = model_dir / MANIFEST_NAME
    path.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
