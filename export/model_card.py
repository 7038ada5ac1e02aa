"""Write ``engines/models/manifest.json`` and ``engines/models/MODEL_CARD.md``.

    python -m export.model_card --report runs/report.json      # the trained models' card
    python -m export.model_card --placeholder                  # untrained placeholders

The manifest lists every shipped file with its sha256, architecture and precision; the engines
verify files against it before loading. The card is generated from the evaluation report written
by :mod:`export.evaluate` and the training logs, so its numbers are never typed by hand.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "engines" / "models"
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
MAX_FILE_BYTES = 25 * 1024 * 1024


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path) -> dict[str, str]:
    """Manifest entry of one shipped ONNX file (name ``<architecture>[.int8].onnx``)."""
    stem = path.name[: -len(".onnx")]
    precision = "int8" if stem.endswith(".int8") else "fp32"
    return {"sha256": sha256(path), "architecture": stem.removesuffix(".int8"), "precision": precision}


def write_manifest(models_dir: Path = MODELS_DIR) -> dict:
    files = {}
    for path in sorted(models_dir.glob("*.onnx")):
        if path.stat().st_size >= MAX_FILE_BYTES:
            raise ValueError(f"{path} is {path.stat().st_size} bytes, over the 25 MB limit for shipped files")
        files[path.name] = describe(path)
    manifest = {"files": files}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _file_table(manifest: dict, models_dir: Path) -> list[str]:
    lines = ["| file | architecture | precision | size | sha256 |", "|---|---|---|---|---|"]
    for name, entry in manifest["files"].items():
        size = (models_dir / name).stat().st_size / 1e6
        lines.append(f"| `{name}` | {entry['architecture']} | {entry['precision']} | {size:.1f} MB | `{entry['sha256']}` |")
    return lines


def placeholder_card(manifest: dict, models_dir: Path) -> str:
    lines = [
        "**UNTRAINED PLACEHOLDERS: these ONNX files hold seeded random weights, to be replaced by the trained models.**",
        "",
        "# AQS model card (placeholder)",
        "",
        "They have the final input/output contract (see `engines/contract.py`): input `windows` uint8",
        "`[N, 7, 3, 224, 224]` (dynamic N), outputs `quality` `[N]`, `artifact_logits` `[N, 10]`, `intensity` `[N, 10]`,",
        "so engines and the daemon can be built and tested against real files. Their scores mean nothing.",
        "",
        "Made with `python -m export.export_onnx --model NAME --out engines/models/NAME.onnx` (seed 0) and",
        "`python -m export.model_card --placeholder`.",
        "",
        *_file_table(manifest, models_dir),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--placeholder", action="store_true")
    parser.add_argument("--report", type=Path, help="JSON report from export.evaluate")
    args = parser.parse_args(argv)
    manifest = write_manifest(args.models_dir)
    if args.placeholder:
        text = placeholder_card(manifest, args.models_dir)
    else:
        report = json.loads(args.report.read_text())
        text = trained_card(manifest, args.models_dir, report)
    (args.models_dir / CARD).write_text(text)
    print(f"wrote {args.models_dir / MANIFEST} ({len(manifest['files'])} files) and {args.models_dir / CARD}")
    return 0


def trained_card(manifest: dict, models_dir: Path, report: dict) -> str:  # filled in below
    raise NotImplementedError


if __name__ == "__main__":
    sys.exit(main())
