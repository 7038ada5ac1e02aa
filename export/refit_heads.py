"""Refit the trunk and heads of a trained AQS model on frozen features of more training data.

    python -m export.refit_heads --model aqs_effnet_b0 --init runs/aqs_effnet_b0_stage1/weights.pt \
        --train data/dataset/train,data/v2/dataset/train --heldout data/dataset/heldout \
        --out runs/aqs_effnet_b0 --cache-dir runs/features

The backbone (on the key frame) and the temporal branch stay as trained; their features
(:meth:`AQSNet.learned_features`) are computed once for every window (full 7x7 mosaic, eval mode)
and only the trunk MLP and the three heads are trained on them, with :func:`export.train.losses`.
A model that also reads the classical statistics (``engines.architectures.WITH_STATISTICS``) can
start from one that does not: the tensors they share are loaded, the statistics' scaling is fitted
on the training windows, and the trunk learns to read both. On a 2-core CPU that turns a new
dataset into better heads in minutes, where another pass of full training takes hours. Writes
``OUT/weights.pt`` (the whole model, loadable by ``export.export_onnx``), ``OUT/command.txt`` and
``OUT/log.jsonl`` in :mod:`export.train`'s format (so the model card lists it as a stage after the
run it started from).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engines.architectures import MODEL_NAMES, AQSNet, build_model
from engines.architectures.statistics import GRAPH_SPATIAL_FRAMES, STATISTICS_COLUMNS
from engines.classical import FEATURES_VERSION, extract_features
from export.export_onnx import read_state
from export.train import (ShardCache, Split, fit_statistics_scaling, is_calibration_shard, load_matching, losses,
                          outputs_metrics)


@torch.no_grad()
def learned_features(model: AQSNet, split: Split, batch_size: int = 32) -> np.ndarray:
    """Backbone (key frames) and temporal-branch features of every window of a split (eval mode)."""
    model.eval()
    return np.concatenate([model.learned_features(torch.from_numpy(split.windows[start : start + batch_size])).numpy()
                           for start in range(0, len(split), batch_size)])


def classical_statistics(split: Split, batch_size: int = 64) -> np.ndarray:
    """The classical engine's features of every window as the network measures them (spatial ones on
    the key frame), by the numpy implementation (faster on a CPU than the torch one in the graph; a
    test holds the two equal)."""
    return np.concatenate([extract_features(split.windows[start : start + batch_size], spatial_frames=GRAPH_SPATIAL_FRAMES)
                           for start in range(0, len(split), batch_size)])


def split_features(model: AQSNet, init: Path, directory: Path, cache_dir: Path | None, use=lambda path: True,
                   exclude_generators: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Learned features (and classical statistics, when the model reads them) and labels of one split
    (its shards that ``use`` picks, without the windows of ``exclude_generators``), kept in
    ``cache_dir`` under the weights' sha256 (or the statistics' version) and the windows' key."""
    split = ShardCache(directory, use=use, exclude_generators=exclude_generators).refresh()
    if split is None:
        raise SystemExit(f"no shards under {directory}")
    where = _windows_key(directory, use, exclude_generators)
    data = {"quality": split.quality, "presence": split.presence, "intensity": split.intensity}
    weights = hashlib.sha256(init.read_bytes()).hexdigest()[:12]
    data["x"] = _cached(cache_dir, f"{weights}{where}", "x", lambda: learned_features(model, split))
    if model.statistics is not None:
        classical = _cached(cache_dir, f"classical-v{FEATURES_VERSION}-frames{''.join(map(str, GRAPH_SPATIAL_FRAMES))}-{where}", "statistics",
                            lambda: classical_statistics(split))
        data["statistics"] = classical[:, list(STATISTICS_COLUMNS)]
    return data


def _windows_key(directory: Path, use=lambda path: True, exclude_generators: frozenset[str] = frozenset()) -> str:
    """Names the windows of a split folder: each chosen shard's name and the clip and degradation of
    each of its windows, and the generators left out (cheap to read; changes when a shard is rebuilt or
    has windows removed, not when only its labels are rewritten)."""
    digest = hashlib.sha256(str(directory.resolve()).encode())
    if exclude_generators:
        digest.update(("without " + ",".join(sorted(exclude_generators))).encode())
    for path in sorted(p for p in directory.glob("shard_*.npz") if use(p)):
        with np.load(path, allow_pickle=False) as z:
            digest.update(path.name.encode())
            digest.update(np.ascontiguousarray(z["clip_id"]).tobytes())
            digest.update("|".join(z["degradation"].tolist()).encode())
    return digest.hexdigest()[:12]


def _cached(cache_dir: Path | None, key: str, name: str, compute) -> np.ndarray:
    path = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return z[name]
    values = compute()
    if path is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{name: values})
    return values


@torch.no_grad()
def trunk_inputs(model: AQSNet, data: dict[str, np.ndarray]) -> torch.Tensor:
    """What :meth:`AQSNet.features` returns for these windows, from their cached parts."""
    statistics = torch.from_numpy(data["statistics"]) if "statistics" in data else None
    return model.trunk_input(torch.from_numpy(data["x"]), statistics)


@torch.no_grad()
def heldout_metrics(model: AQSNet, data: dict[str, np.ndarray]) -> dict:
    model.eval()
    outputs = (t.numpy() for t in model.heads(trunk_inputs(model, data)))
    return outputs_metrics(*outputs, target=data["quality"], presence=data["presence"])


HEAD_PARTS = ("trunk", "quality_head", "artifact_head", "intensity_head")  # what a refit trains


def reset_heads(model: AQSNet) -> set[str]:
    """Re-initialise the trunk and heads (and forget the statistics' scaling); returns the state keys reset."""
    for part in HEAD_PARTS:
        for module in getattr(model, part).modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()
    reset = {k for k in model.state_dict() if k.split(".")[0] in HEAD_PARTS}
    if model.statistics is not None:
        reset |= {"statistics_mean", "statistics_scale"}
    return reset


def head_parameters(model: AQSNet) -> list[torch.nn.Parameter]:
    return [p for part in HEAD_PARTS for p in getattr(model, part).parameters()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_NAMES, required=True)
    parser.add_argument("--init", type=Path, required=True, help="the trained model's weights.pt")
    parser.add_argument("--train", required=True, help="comma-separated training split folders (shard_*.npz)")
    parser.add_argument("--heldout", required=True,
                        help="comma-separated held-out split folders, for the log (the first one's figures are the run's)")
    parser.add_argument("--calibration", action="store_true",
                        help="keep every 10th training shard out (export.train.is_calibration_shard), for export.fit_aqs")
    parser.add_argument("--exclude-generators", default="",
                        help="comma-separated export.build_dataset.GENERATORS whose windows are left out of training")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10, help="epochs between log records")
    parser.add_argument("--cache-dir", type=Path, help="keep computed features here (keyed by weights and shards)")
    parser.add_argument("--fresh-heads", action="store_true",
                        help="train the trunk and heads from random initialisation (only the backbone and temporal "
                             "branch come from --init): compares backbones with heads trained on the same data")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "command.txt").write_text("python -m export.refit_heads " + " ".join(argv if argv is not None else sys.argv[1:]) + "\n")
    model = build_model(args.model)
    fresh = load_matching(model, read_state(args.init), args.init)
    if args.fresh_heads:
        fresh = sorted(set(fresh) | reset_heads(model))
    if fresh:
        print(f"initialised afresh (not in {args.init}): {', '.join(fresh)}", file=sys.stderr)
    started = time.monotonic()
    use = (lambda p: not is_calibration_shard(p)) if args.calibration else (lambda p: True)
    excluded = frozenset(g for g in args.exclude_generators.split(",") if g)
    parts = [split_features(model, args.init, Path(d), args.cache_dir, use, excluded) for d in args.train.split(",")]
    train = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    heldouts = [(d, split_features(model, args.init, Path(d), args.cache_dir)) for d in args.heldout.split(",")]
    heldout = heldouts[0][1]
    print(f"features: {len(train['x'])} training windows, {sum(len(h['x']) for _, h in heldouts)} held-out, "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    if model.statistics is not None and "statistics_mean" in fresh:
        fit_statistics_scaling(model, train["statistics"])  # a trunk trained on them keeps its scaling
    x = trunk_inputs(model, train)
    labels = [torch.from_numpy(np.clip(train[k], 0.0, 1.0).astype(np.float32)) for k in ("quality", "presence", "intensity")]

    for d, h in heldouts:
        print(json.dumps({"before": d, **{k: v for k, v in heldout_metrics(model, h).items() if k != "heldout_auc"}}),
              file=sys.stderr)
    optimizer = torch.optim.AdamW(head_parameters(model), lr=args.lr, weight_decay=args.weight_decay)
    steps = len(x) // args.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps)
    generator = torch.Generator().manual_seed(args.seed)
    log_path = args.out / "log.jsonl"
    log_path.unlink(missing_ok=True)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        totals: dict[str, float] = {}
        for step in range(steps):
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss = losses(model.heads(x[index]), *(t[index] for t in labels))
            optimizer.zero_grad(set_to_none=True)
            loss["total"].backward()
            optimizer.step()
            schedule.step()
            for key, value in loss.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach())
        if (epoch + 1) % args.log_every and epoch + 1 != args.epochs:
            continue
        record = {"epoch": epoch + 1, "train_windows": len(x), "steps": steps, "crop_fragments": 7,
                  **{f"train_loss_{k}": v / max(steps, 1) for k, v in totals.items()},
                  **heldout_metrics(model, heldout), "elapsed_s": round(time.monotonic() - started, 1),
                  **({"more_heldout": {d: {k: v for k, v in heldout_metrics(model, h).items() if k != "heldout_auc"}
                                       for d, h in heldouts[1:]}} if len(heldouts) > 1 else {}),
                  "device": "cpu", "init": str(args.init), "frozen": "backbone, temporal branch",
                  "heads": "fresh" if args.fresh_heads else "from init"}
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                          if k != "heldout_auc"}), flush=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / "weights.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
