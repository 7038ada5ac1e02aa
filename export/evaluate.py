"""Evaluate the shipped models and the classical peers on the held-out split (for the model card).

    python -m export.evaluate --out runs/evaluation.json

1. Every ONNX file in ``engines/models`` on the held-out windows (the shards): SROCC and PLCC of
   ``quality`` and of AQS (:func:`engines.aqs.aqs`) against VMAF / 100, per-artifact ROC-AUC.
2. The peers PIQE and BRISQUE (:mod:`export.peers`) on the same held-out windows: the whole
   decoded middle frame of each window, taken from the held-out clip files
   (``data/heldout_clips``, listed in ``data/dataset/manifest.json``); lower is better for both, so
   their correlations are reported for the negated score. The models are re-scored on exactly the
   windows whose clip files exist, so all numbers compare like with like.
3. The issue's acceptance check on real files: each held-out clean reference clip and its x264
   CRF 46 encode, scored by ``vqa-monitor score`` (the same decoder, sampler, engine and AQS as the
   daemon), with the encode's VMAF.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engines.aqs import aqs
from engines.contract import ARTIFACTS, WINDOW_FRAMES
from engines.contract import sigmoid as np_sigmoid
from engines.modelfiles import DEFAULT_MODEL_DIR as MODELS
from export.metrics import artifact_aucs, mean_defined, plcc, srocc

REPO = Path(__file__).resolve().parent.parent


def load_heldout(directory: Path) -> dict[str, np.ndarray]:
    """All held-out shards with a ``window`` index (position of the window inside its clip)."""
    parts = []
    for path in sorted(directory.glob("shard_*.npz")):
        with np.load(path, allow_pickle=False) as z:
            parts.append({k: z[k] for k in ("windows", "quality", "presence", "intensity", "clip_id", "degradation")})
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    position = np.zeros(len(data["clip_id"]), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, clip in enumerate(data["clip_id"].tolist()):
        position[i] = seen.get(clip, 0)
        seen[clip] = position[i] + 1
    data["window"] = position
    return data


def onnx_outputs(path: Path, windows: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from export.quantize import run, session

    return run(session(path, threads), windows)


def classical_outputs(path: Path, windows: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped classical engine (``classical.json`` in ``path``'s folder), as the daemon runs it."""
    from engines import classical

    engine = classical.load(model_dir=path.parent)
    outputs = [engine.infer(windows[i : i + 64]) for i in range(0, len(windows), 64)]
    return tuple(np.concatenate([getattr(o, k) for o in outputs]) for k in ("quality", "artifact_logits", "intensity"))


def evaluated_models(models_dir: Path) -> dict[str, Path]:
    """Every shipped model file the card reports on: the ONNX files and the classical engine's file."""
    files = {p.name: p for p in sorted(models_dir.glob("*.onnx"))}
    if (models_dir / "classical.json").exists():
        files["classical.json"] = models_dir / "classical.json"
    return files


def model_metrics(path: Path, data: dict[str, np.ndarray], rows: np.ndarray, threads: int = 2) -> dict:
    run = classical_outputs if path.suffix == ".json" else onnx_outputs
    quality, logits, intensity = run(path, data["windows"][rows], threads)
    score = aqs(quality, np_sigmoid(logits), intensity)
    target = data["quality"][rows]
    aucs = artifact_aucs(logits, data["presence"][rows])
    return {
        "windows": int(len(rows)),
        "quality_srocc": srocc(quality, target), "quality_plcc": plcc(quality, target),
        "aqs_srocc": srocc(score, target), "aqs_plcc": plcc(score, target),
        "mean_auc": mean_defined(aucs.values()), "auc": aucs,
        "positives": {name: int(data["presence"][rows][:, k].sum()) for k, name in enumerate(ARTIFACTS)},
        "clean_windows_mean_aqs": float(score[data["presence"][rows].sum(1) == 0].mean())
        if (data["presence"][rows].sum(1) == 0).any() else None,
    }


def locate(recorded: str | None, data_dir: Path, folder: str) -> Path | None:
    """A file named in the dataset manifest: where it was written, else under ``folder`` beside or
    inside the dataset directory (a copied dataset keeps its clips there)."""
    if not recorded:
        return None
    path = Path(recorded) if Path(recorded).is_absolute() else REPO / recorded
    for candidate in (path, data_dir / folder / path.name, data_dir.parent / folder / path.name):
        if candidate.exists():
            return candidate
    return None


def middle_frames(path: Path, windows: list[int]) -> dict[int, np.ndarray]:
    """RGB of the middle frame of each requested window of a clip file (whole decoded frames)."""
    import av

    wanted = {w * WINDOW_FRAMES + WINDOW_FRAMES // 2: w for w in windows}
    frames = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[wanted[index]] = frame.to_ndarray(format="rgb24")
            if index >= max(wanted):
                break
    return frames


def peer_scores(data: dict[str, np.ndarray], manifest: dict, data_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PIQE, BRISQUE and FFmpeg's blockdetect / blurdetect for every held-out window whose clip file
    exists; returns the rows used."""
    from tqdm import tqdm

    from export.peers import FFMPEG_DETECTORS, Brisque, ffmpeg_detector, piqe

    brisque = Brisque()
    detected: dict[str, list[float]] = {name: [] for name in FFMPEG_DETECTORS}
    files = {m["clip_id"]: m.get("distorted") for m in manifest["clips"] if m["split"] == "heldout"}
    rows, piqe_scores, brisque_scores = [], [], []
    by_clip: dict[int, list[int]] = {}
    for row, clip in enumerate(data["clip_id"].tolist()):
        by_clip.setdefault(clip, []).append(row)
    for clip, clip_rows in tqdm(sorted(by_clip.items()), desc="peers", unit="clip", mininterval=10):
        path = locate(files.get(clip), data_dir, "heldout_clips")
        if path is None:
            continue
        frames = middle_frames(path, [int(data["window"][r]) for r in clip_rows])
        for r in clip_rows:
            rgb = frames.get(int(data["window"][r]))
            if rgb is None:
                continue
            rows.append(r)
            piqe_scores.append(piqe(rgb))
            brisque_scores.append(brisque(rgb))
            for name, values in detected.items():
                values.append(ffmpeg_detector(rgb, name))
    return np.asarray(rows, dtype=np.int64), {"piqe": np.asarray(piqe_scores), "brisque": np.asarray(brisque_scores),
                                              **{name: np.asarray(v) for name, v in detected.items()}}


# the artifacts each FFmpeg detector is a peer for (higher detector value = more of it)
DETECTOR_ARTIFACTS = {"blockdetect": ("blocking",), "blurdetect": ("defocus_blur", "motion_blur")}


def detector_aucs(peers: dict[str, np.ndarray], presence: np.ndarray) -> dict[str, dict[str, float]]:
    """ROC-AUC of FFmpeg's detectors for the artifacts they detect, on the peer windows."""
    from export.metrics import roc_auc

    return {name: {a: roc_auc(peers[name], presence[:, ARTIFACTS.index(a)]) for a in artifacts}
            for name, artifacts in DETECTOR_ARTIFACTS.items()}


def score_files(files: list[Path], engine: str, models: Path = MODELS) -> list[dict]:
    """``vqa-monitor score --json`` on files, exactly as a user runs it (with the model files in ``models``)."""
    cmd = [sys.executable, "-m", "monitor", "score", "--json", "--engine", engine, "--model-dir", str(models),
           *map(str, files)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not results:
        raise RuntimeError(f"score failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return results


def spread_over_sources(manifest: dict, limit: int = 0) -> list[str]:
    """Held-out reference clips, taken in turn from each held-out source (so a ``limit`` covers all
    sources, not the first two in alphabetical order); ``limit`` 0: all of them."""
    by_source: dict[str, set[str]] = {}
    for m in manifest["clips"]:
        if m["split"] == "heldout":
            by_source.setdefault(m["source"], set()).add(m["reference"])
    queues = [sorted(refs) for _, refs in sorted(by_source.items())]
    ordered = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return ordered[:limit] if limit else ordered


def clean_and_crf46(manifest: dict, data_dir: Path, engines: list[str], limit: int, work: Path,
                    models: Path = MODELS) -> dict:
    """Held-out clean references and their x264 CRF 46 encodes, scored by ``vqa-monitor score``."""
    from export.degrade import decode_rgb, encode
    from export.vmaf import vmaf_frames

    refs = spread_over_sources(manifest, limit)
    pairs = []
    for ref in refs:
        ref_path = locate(ref, data_dir, "refs")
        if ref_path is None:
            continue
        crf46 = work / f"{ref_path.stem}.x264crf46.mkv"
        encode(decode_rgb(ref_path), crf46, "x264", 46, preset="medium")
        pairs.append((ref_path, crf46, float(vmaf_frames(crf46, ref_path, n_threads=2).mean())))
    report: dict = {"clips": [{"reference": str(r.relative_to(REPO)) if r.is_relative_to(REPO) else str(r),
                               "crf46_vmaf": v} for r, _, v in pairs]}
    for engine in engines:
        clean = score_files([p[0] for p in pairs], engine, models)
        bad = score_files([p[1] for p in pairs], engine, models)
        for entry, c, b in zip(report["clips"], clean, bad):
            entry[engine] = {"clean_aqs": c["aqs"], "crf46_aqs": b["aqs"], "engine": c.get("engine"),
                             "crf46_artifacts": {k: round(v, 3) for k, v in b["artifacts"].items() if v >= 0.3}}
        clean_aqs = np.array([c["aqs"] for c in clean])
        bad_aqs = np.array([b["aqs"] for b in bad])
        report[engine] = {
            "clean_aqs_mean": float(clean_aqs.mean()), "clean_aqs_min": float(clean_aqs.min()),
            "crf46_aqs_mean": float(bad_aqs.mean()), "crf46_aqs_max": float(bad_aqs.max()),
            "clean_ge_0.85": int((clean_aqs >= 0.85).sum()), "crf46_le_0.4": int((bad_aqs <= 0.4).sum()),
            "pairs": len(pairs),
        }
    return report


def _clean_looks(manifest: dict, data_dir: Path, engines: list[str], limit: int, work: Path, key: str, look,
                 models: Path = MODELS) -> dict:
    """The held-out references changed by ``look(i, frames) -> (frames, spec, tag)`` (content that is
    still clean), written lossless and scored by ``vqa-monitor score``; ``spec`` is recorded under ``key``."""
    from export.degrade import decode_rgb
    from export.references import write_lossless

    files, looks = [], []
    for i, ref in enumerate(spread_over_sources(manifest, limit)):
        ref_path = locate(ref, data_dir, "refs")
        if ref_path is None:
            continue
        frames, spec, tag = look(i, decode_rgb(ref_path))
        files.append(write_lossless(frames, work / f"{ref_path.stem}_{tag}.mkv"))
        looks.append((ref_path, spec))
    report: dict = {"clips": [{"reference": str(r.relative_to(REPO)) if r.is_relative_to(REPO) else str(r), key: g}
                              for r, g in looks]}
    for engine in engines:
        scored = score_files(files, engine, models)
        for entry, c in zip(report["clips"], scored):
            entry[engine] = {"aqs": c["aqs"], "artifacts": {k: round(v, 3) for k, v in c["artifacts"].items() if v >= 0.3}}
        aqs = np.array([c["aqs"] for c in scored])
        report[engine] = {"aqs_mean": float(aqs.mean()), "aqs_min": float(aqs.min()),
                          "ge_0.85": int((aqs >= 0.85).sum()), "clips": len(files)}
    return report


def graded_clean(manifest: dict, data_dir: Path, engines: list[str], limit: int, work: Path,
                 models: Path = MODELS) -> dict:
    """The same held-out references made monochrome or tinted (``references.grade``, in turn), scored as
    clean content: a toned or black-and-white picture is not a saturation fault."""
    from export.references import grade, grade_tag

    def look(i, frames):
        spec = {"kind": "mono"} if i % 2 == 0 else {"kind": "tint", "hue": (47 * i) % 360, "amount": 0.3}
        return grade(frames, spec), spec, grade_tag(spec)

    return _clean_looks(manifest, data_dir, engines, limit, work, "grade", look, models)


CAMERA_CHECK_OPTICS = ("none", "soft", "sharp")
CAMERA_CHECK_JPEG = (0, 92, 85)


def camera_spec(i: int) -> dict:
    """The i-th camera of the clean-camera check: optics and JPEG quality in turn, sensor noise spread
    evenly over the training range (``build_dataset.CAMERA_*``), from quiet to its noisiest."""
    from export.build_dataset import CAMERA_NOISE_FLOOR, CAMERA_NOISE_GAIN, CAMERA_SHARPEN, CAMERA_SOFT_SIGMA

    level = (i * 7 % 11) / 10  # 0..1, visited in a scattered order
    optics = CAMERA_CHECK_OPTICS[i % 3]
    amount = {"none": 0.0, "soft": float(np.mean(CAMERA_SOFT_SIGMA)), "sharp": float(np.mean(CAMERA_SHARPEN))}[optics]
    return {"seed": 1000 + i, "optics": optics, "optics_amount": round(amount, 3),
            "noise_gain": round(CAMERA_NOISE_GAIN[0] + level * (CAMERA_NOISE_GAIN[1] - CAMERA_NOISE_GAIN[0]), 4),
            "noise_floor": round(CAMERA_NOISE_FLOOR[0] + level * (CAMERA_NOISE_FLOOR[1] - CAMERA_NOISE_FLOOR[0]), 3),
            "jpeg": CAMERA_CHECK_JPEG[(i // 3) % 3]}


def camera_clean(manifest: dict, data_dir: Path, engines: list[str], limit: int, work: Path,
                 models: Path = MODELS) -> dict:
    """The same held-out references as a camera delivers them (``references.camera``: sensor noise,
    lens softness or sharpening, light JPEG), scored as clean content."""
    from export.references import camera, camera_tag

    def look(i, frames):
        spec = camera_spec(i)
        return camera(frames, spec, range(len(frames))), spec, camera_tag(spec)

    return _clean_looks(manifest, data_dir, engines, limit, work, "camera", look, models)


def generator_families(models: dict[str, Path], data: dict[str, np.ndarray], threads: int) -> dict:
    """The held-out-generator test set (``build_dataset --generators heldout``: one held-out
    implementation per clip, on held-out sources), per generator: windows, mean VMAF, mean AQS and
    quality, their SROCC against VMAF, and the ROC-AUC of the family's artifact for its damaged
    windows against the set's clean windows."""
    from export.build_dataset import FAMILY_ARTIFACT, HELDOUT_GENERATORS, tag_generators
    from export.metrics import roc_auc

    generators = [set(tag_generators(str(t))) for t in data["degradation"]]
    clean = data["presence"].sum(1) == 0
    report: dict = {"windows": int(len(clean)), "clean_windows": int(clean.sum()), "generators": {}}
    outputs, scores = {}, {}
    for name, path in models.items():
        run = classical_outputs if path.suffix == ".json" else onnx_outputs
        outputs[name] = run(path, data["windows"], threads)
        quality, logits, intensity = outputs[name]
        scores[name] = aqs(quality, np_sigmoid(logits), intensity)
    for family, names in HELDOUT_GENERATORS.items():
        k = ARTIFACTS.index(FAMILY_ARTIFACT[family])
        for generator in names:
            made = np.array([generator in g for g in generators])
            damaged = made & (data["presence"][:, k] > 0.5)
            entry: dict = {"family": family, "artifact": FAMILY_ARTIFACT[family], "windows": int(made.sum()),
                           "damaged_windows": int(damaged.sum()),
                           "vmaf_mean": float(100 * data["quality"][made].mean()) if made.any() else None}
            for name, (quality, logits, _) in outputs.items():
                score = scores[name]
                both = damaged | clean
                entry[name] = {"aqs_mean": float(score[made].mean()) if made.any() else None,
                               "quality_mean": float(quality[made].mean()) if made.any() else None,
                               "aqs_srocc": srocc(score[made], data["quality"][made]),
                               "quality_srocc": srocc(quality[made], data["quality"][made]),
                               "auc": roc_auc(logits[both, k], damaged[both])}
            report["generators"][generator] = entry
    for name in outputs:
        aucs = [e[name]["auc"] for e in report["generators"].values()]
        report[name] = {"min_auc": float(np.nanmin(aucs)), "mean_auc": mean_defined(aucs)}
    return report


CRF_LADDER = (18, 26, 34, 42, 46, 51)
MONOTONE_TOLERANCE = 0.02  # an AQS step up smaller than this along the ladder still counts as monotone


def crf_ladder(manifest: dict, data_dir: Path, engines: list[str], limit: int, work: Path,
               models: Path = MODELS) -> dict:
    """Each held-out reference encoded by x264 at every CRF of :data:`CRF_LADDER`, scored by
    ``vqa-monitor score``: is AQS non-increasing along the ladder, as VMAF is?"""
    from export.degrade import decode_rgb, encode
    from export.vmaf import vmaf_frames

    refs = [r for r in (locate(ref, data_dir, "refs") for ref in spread_over_sources(manifest, limit)) if r is not None]
    files, vmaf = [], []
    for ref_path in refs:
        frames = decode_rgb(ref_path)
        for crf in CRF_LADDER:
            path = encode(frames, work / f"{ref_path.stem}.x264crf{crf}.mkv", "x264", crf, preset="medium")[0]
            files.append(path)
            vmaf.append(float(vmaf_frames(path, ref_path, n_threads=2).mean()))
    n = len(CRF_LADDER)
    report: dict = {"ladder": list(CRF_LADDER), "tolerance": MONOTONE_TOLERANCE, "references": len(refs),
                    "vmaf_mean": [float(np.mean(vmaf[i::n])) for i in range(n)]}
    for engine in engines:
        scores = np.array([r["aqs"] for r in score_files(files, engine, models)]).reshape(len(refs), n)
        steps = np.diff(scores, axis=1)
        report[engine] = {"aqs_mean": scores.mean(0).round(4).tolist(),
                          "monotone": int((steps <= MONOTONE_TOLERANCE).all(1).sum()),
                          "strictly_monotone": int((steps <= 0).all(1).sum()),
                          "srocc_vs_vmaf": srocc(scores.reshape(-1), np.array(vmaf))}
    return report


def split_reports(models: dict[str, Path], more_heldout: list[Path], generators_data: Path, threads: int) -> dict:
    """Every model on further held-out splits, and on the held-out-generator test set when it exists."""
    out: dict = {"more_heldout": {}}
    for extra in more_heldout:
        split = load_heldout(extra / "heldout")
        rows = np.arange(len(split["quality"]))
        out["more_heldout"][str(extra)] = {name: model_metrics(p, split, rows, threads) for name, p in models.items()}
    if (generators_data / "heldout").exists():
        out["heldout_generators"] = generator_families(models, load_heldout(generators_data / "heldout"), threads)
    return out


def real_file_inputs(args: argparse.Namespace, manifest: dict, work: Path) -> tuple:
    """The arguments every real-file check (``crf_ladder``, ``clean_and_crf46``, ``graded_clean``,
    ``camera_clean``) takes, from the command line: encodes go to ``work``."""
    return manifest, args.data, args.engines.split(","), args.clean_clips, work, args.models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "dataset")
    parser.add_argument("--models", type=Path, default=MODELS,
                        help="model directory for every measurement, the real-file checks included (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "evaluation.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="onnxruntime:aqs_effnet_b0,onnxruntime:aqs_mnv3_small,classical",
                        help="comma-separated engine specs for the clean / CRF 46 check")
    parser.add_argument("--clean-clips", type=int, default=0, help="held-out references to check (0: all)")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--more-heldout", type=lambda v: [Path(x) for x in v.split(",") if x], default=[],
                        help="more datasets (comma-separated) whose held-out split every model is measured on too")
    parser.add_argument("--update", action="store_true",
                        help="only add --more-heldout, the held-out generators and the clean-camera check to the "
                        "existing --out report")
    parser.add_argument("--generators-data", type=Path, default=REPO / "data" / "genx" / "dataset",
                        help="the held-out-generator test set (build_dataset --generators heldout)")
    args = parser.parse_args(argv)

    started = time.time()
    models = evaluated_models(args.models)
    if args.update:
        report = json.loads(args.out.read_text())
        report.update(split_reports(models, args.more_heldout, args.generators_data, args.threads))
        manifest = json.loads((args.data / "manifest.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            report["camera_clean"] = camera_clean(*real_file_inputs(args, manifest, Path(tmp)))
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    data = load_heldout(args.data / "heldout")
    manifest = json.loads((args.data / "manifest.json").read_text())
    report: dict = {"heldout_windows": int(len(data["quality"])), "heldout_clips": int(len(set(data["clip_id"].tolist())))}
    all_rows = np.arange(len(data["quality"]))
    report["models"] = {name: model_metrics(p, data, all_rows, args.threads) for name, p in models.items()}

    if not args.skip_peers:
        rows, peers = peer_scores(data, manifest, args.data)
        target = data["quality"][rows]
        report["peer_windows"] = int(len(rows))
        report["peers"] = {name: {"srocc": srocc(-peers[name], target), "plcc": plcc(-peers[name], target),
                                  "mean": float(peers[name].mean())} for name in ("piqe", "brisque")}
        report["detector_auc"] = detector_aucs(peers, data["presence"][rows])
        report["models_on_peer_windows"] = {
            name: {k: v for k, v in model_metrics(p, data, rows, args.threads).items() if k != "positives"}
            for name, p in models.items()
        }
    report.update(split_reports(models, args.more_heldout, args.generators_data, args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = real_file_inputs(args, manifest, Path(tmp))
        report["crf_ladder"] = crf_ladder(*inputs)
        report["clean_vs_crf46"] = clean_and_crf46(*inputs)
        report["graded_clean"] = graded_clean(*inputs)
        report["camera_clean"] = camera_clean(*inputs)
    report["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "models"}, indent=1)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
