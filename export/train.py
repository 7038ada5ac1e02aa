"""Train an AQS model on the window shards (seeded, resumable, per-epoch metrics).

    nice -n 5 python -m export.train --model aqs_effnet_b0 --epochs 10 --batch-size 24
    nice -n 5 python -m export.train --model aqs_effnet_b0 --epochs 10 --resume     # go on after a stop
    nice -n 5 python -m export.train --model aqs_effnet_b0 --epochs 14 --crop-fragments 4 --full-epochs 2
        # 4x4-fragment crops (~1/3 of the cost) for the first 12 epochs, the whole 7x7 mosaic for the last 2

Reads ``data/dataset/train/shard_*.npz`` (re-listed every epoch, so shards that appear while
training runs are picked up) and evaluates on ``data/dataset/heldout/shard_*.npz`` after each
epoch. Writes ``runs/<model>/last.pt`` (model + optimiser, each epoch), ``runs/<model>/weights.pt``
(model weights only, loadable with ``torch.load(weights_only=True)``) and appends one JSON object
per epoch to ``runs/<model>/log.jsonl`` (train loss, held-out SROCC/PLCC of quality against VMAF,
mean per-artifact ROC-AUC).

Losses: L1 on quality (VMAF / 100), BCE-with-logits on artifact presence, BCE on intensity masked
to the artifacts present, and optionally (``--aqs-loss W``, off by default) L1 between the AQS of
the outputs and the AQS of the labels (:func:`engines.aqs.aqs` on VMAF / 100, presence and
intensity). Tried once as a fine-tune of the shipped EfficientNet-B0 (7 epochs on a rebuilt
dataset, ``export/reports/train_aqs_effnet_b0_finetune_aqs_loss.jsonl``): held-out quality SROCC
fell from 0.713 to 0.674 and clean-window AQS rose only from 0.72 to 0.76, so it is not used for
the shipped models. Only label-preserving augmentation: horizontal flip of the whole window (no
resizing, blur or colour changes - they would change the labels).

``--init WEIGHTS`` starts from a ``weights.pt`` (fine-tuning; a fresh optimiser and schedule).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engines.aqs import SHIPPED_CAPS, SHIPPED_DEAD_ZONE, aqs
from engines.architectures import DEFAULT_KEY_FRAMES, MODEL_NAMES, build_model
from engines.architectures.statistics import GRAPH_SPATIAL_FRAMES, STATISTICS_COLUMNS
from engines.classical import extract_features
from engines.contract import ARTIFACTS, FRAGMENT_GRID, FRAGMENT_SIZE
from export.export_onnx import read_state
from export.metrics import artifact_aucs, mean_defined, plcc, srocc
from export.pretrained import init_backbone, load_lite0_imagenet
from export.shards import ShardedWindows, memmap_member

REPO = Path(__file__).resolve().parent.parent
LABELS = ("windows", "quality", "presence", "intensity")
STATISTICS_SAMPLE = 512  # training windows whose classical statistics set their standardisation


@dataclass
class Split:
    """Windows and labels of one split: windows memory-mapped from the shards (~1 MB each), labels in memory."""

    windows: ShardedWindows  # [M, 7, 3, 224, 224] uint8
    quality: np.ndarray  # [M] float32, VMAF / 100
    presence: np.ndarray  # [M, 10] float32 0/1
    intensity: np.ndarray  # [M, 10] float32 0..1

    def __len__(self) -> int:
        return len(self.quality)


CALIBRATION_EVERY = 10  # with --calibration: every 10th shard of each training set is kept out of training


def is_calibration_shard(path: Path) -> bool:
    """Shards set aside from training to fit how the outputs combine into AQS (export.fit_aqs)."""
    return int(path.stem.split("_")[-1]) % CALIBRATION_EVERY == CALIBRATION_EVERY - 1


class ShardCache:
    """Maps the ``shard_*.npz`` of one or more split directories once each, and re-lists them on demand.

    ``use`` picks shards by path; windows made by any of ``exclude_generators`` (names of
    ``export.build_dataset.GENERATORS``) are left out.
    """

    def __init__(self, *directories: Path, use=lambda path: True, exclude_generators: frozenset[str] = frozenset()) -> None:
        self.directories = [Path(d) for d in directories]
        self.use = use
        self.exclude_generators = frozenset(exclude_generators)
        self.loaded: dict[Path, dict[str, np.ndarray]] = {}

    def refresh(self) -> Split | None:
        for path in sorted(p for d in self.directories for p in d.glob("shard_*.npz") if self.use(p)):
            if path not in self.loaded:
                try:
                    with np.load(path, allow_pickle=False) as z:
                        labels = {key: z[key] for key in (*LABELS[1:], "degradation")}
                    self.loaded[path] = {"windows": memmap_member(path, "windows"), **labels}
                except Exception as exc:  # a shard still being written: take it next epoch
                    print(f"skipping {path} for now: {exc}", file=sys.stderr)
        if not self.loaded:
            return None
        parts = [self.loaded[path] for path in sorted(self.loaded)]
        rows = None
        if self.exclude_generators:
            from export.build_dataset import tag_generators

            tags = np.concatenate([p["degradation"] for p in parts])
            rows = np.array([i for i, tag in enumerate(tags) if not tag_generators(str(tag)) & self.exclude_generators])
        split = Split(
            windows=ShardedWindows([p["windows"] for p in parts]),
            quality=np.clip(np.concatenate([p["quality"] for p in parts]).astype(np.float32), 0.0, 1.0),
            presence=np.concatenate([p["presence"] for p in parts]).astype(np.float32),
            intensity=np.clip(np.concatenate([p["intensity"] for p in parts]).astype(np.float32), 0.0, 1.0),
        )
        return split if rows is None else Split(split.windows.select(rows), split.quality[rows], split.presence[rows],
                                                split.intensity[rows])


def fit_statistics_scaling(model: torch.nn.Module, statistics: np.ndarray) -> None:
    """Set the standardisation of the model's classical statistics from training windows' raw values."""
    values = torch.from_numpy(np.asarray(statistics, dtype=np.float32))
    model.statistics_mean.copy_(values.mean(0))
    model.statistics_scale.copy_(values.std(0, unbiased=False).clamp(min=1e-6))


# What a model with classical statistics has that one without them lacks (or has in another shape).
ADDED_WITH_STATISTICS = frozenset({"trunk.0.weight", "statistics_mean", "statistics_scale"})


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> list[str]:
    """Load ``state`` (from ``source``) into ``model``; it may lack only what the classical statistics
    add (:data:`ADDED_WITH_STATISTICS`), which is left as initialised and returned. Anything else
    missing or of another shape means weights of another architecture: SystemExit naming them."""
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(set(own) - set(kept))
    foreign = [k for k in fresh if k not in ADDED_WITH_STATISTICS]
    if foreign:
        raise SystemExit(f"{source}: not weights of this model ({len(foreign)} tensors missing or of another "
                         f"shape, e.g. {', '.join(foreign[:3])})")
    model.load_state_dict(kept, strict=False)
    return fresh


def aqs_torch(quality: torch.Tensor, probabilities: torch.Tensor, intensities: torch.Tensor,
              caps: np.ndarray = SHIPPED_CAPS, dead_zone: float = SHIPPED_DEAD_ZONE) -> torch.Tensor:
    """:func:`engines.aqs.aqs` in torch (differentiable); a test checks that the two agree."""
    caps_t = torch.as_tensor(caps, dtype=quality.dtype, device=quality.device).clamp(0.0, 1.0)
    evidence = probabilities.clamp(0.0, 1.0) * intensities.clamp(0.0, 1.0)
    counted = (evidence - dead_zone).clamp(min=0.0) / (1.0 - dead_zone)
    return torch.minimum(quality.clamp(0.0, 1.0), torch.prod(1.0 - caps_t * counted, dim=-1))


def losses(outputs, quality, presence, intensity, aqs_weight: float = 0.0) -> dict[str, torch.Tensor]:
    q, logits, s = outputs
    parts = {
        "quality": F.l1_loss(q, quality),
        "presence": F.binary_cross_entropy_with_logits(logits, presence),
        "aqs": F.l1_loss(aqs_torch(q, torch.sigmoid(logits), s), aqs_torch(quality, presence, intensity)),
    }
    mask = presence > 0.5
    if bool(mask.any()):
        parts["intensity"] = F.binary_cross_entropy(s[mask].clamp(1e-6, 1 - 1e-6), intensity[mask])
    else:
        parts["intensity"] = s.sum() * 0.0
    parts["total"] = 2.0 * parts["quality"] + parts["presence"] + 0.5 * parts["intensity"] + aqs_weight * parts["aqs"]
    return parts


def crop_fragments(windows: np.ndarray, fragments: int, rng: np.random.Generator) -> np.ndarray:
    """A random fragment-aligned ``fragments`` x ``fragments`` crop of each window's mosaic.

    Every fragment is native-resolution content, so a crop is a smaller but equally valid input; the
    backbone then costs (fragments / 7)^2 of the full mosaic, which is what makes training on a CPU fit.
    """
    side = fragments * FRAGMENT_SIZE
    out = np.empty((*windows.shape[:3], side, side), dtype=windows.dtype)
    rows, cols = rng.integers(0, FRAGMENT_GRID - fragments + 1, size=(2, len(windows))) * FRAGMENT_SIZE
    for i, (r, c) in enumerate(zip(rows, cols)):
        out[i] = windows[i, ..., r : r + side, c : c + side]
    return out


def batch_tensors(split: Split, index: np.ndarray, flip: np.ndarray, device: torch.device,
                  crop: int = 0, rng: np.random.Generator | None = None):
    """Windows (cropped to ``crop`` fragments if set, horizontally flipped where ``flip``) and labels of
    ``index``, on ``device``."""
    windows = split.windows[index]
    if crop and crop < FRAGMENT_GRID:
        windows = crop_fragments(windows, crop, rng or np.random.default_rng())
    windows = torch.from_numpy(windows)
    if flip.any():
        windows[flip] = windows[flip].flip(-1)
    labels = [torch.from_numpy(getattr(split, key)[index]).to(device) for key in LABELS[1:]]
    return windows.to(device, non_blocking=True), labels


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int = 32):
    model.eval()
    outs = [[], [], []]
    for start in range(0, len(split), batch_size):
        x = torch.from_numpy(split.windows[start : start + batch_size]).to(device)
        for acc, t in zip(outs, model(x)):
            acc.append(t.float().cpu().numpy())
    return [np.concatenate(o) for o in outs]


def heldout_metrics(model, split: Split, device) -> dict:
    return outputs_metrics(*predict(model, split, device), target=split.quality, presence=split.presence)


def outputs_metrics(quality: np.ndarray, logits: np.ndarray, intensity: np.ndarray, *, target: np.ndarray,
                    presence: np.ndarray) -> dict:
    """The per-epoch held-out record: quality and AQS against VMAF/100, artifact ROC-AUC, clean-window AQS."""
    aucs = artifact_aucs(logits, presence)
    score = aqs(quality, 1.0 / (1.0 + np.exp(-logits)), intensity)
    clean = presence.sum(1) == 0
    return {
        "heldout_windows": len(target),
        "heldout_srocc": srocc(quality, target),
        "heldout_plcc": plcc(quality, target),
        "heldout_aqs_srocc": srocc(score, target),
        "heldout_clean_aqs": float(score[clean].mean()) if clean.any() else None,
        "heldout_mean_auc": mean_defined(aucs.values()),
        "heldout_auc": aucs,
    }


def parameter_groups(model: torch.nn.Module, weight_decay: float, backbone_lr_scale: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and kernels only; the backbone's learning rate scaled."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name.startswith("backbone."), param.ndim > 1), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             "lr_scale": backbone_lr_scale if in_backbone else 1.0}
            for (in_backbone, decays), params in sorted(groups.items())]


def train_mode(model: torch.nn.Module, freeze_norm: bool = False) -> None:
    """``model.train()``; with ``freeze_norm`` the batch-norm layers stay in eval mode, so a fine-tune
    starts from exactly the function it was given (small batches of crops would otherwise replace the
    running statistics the heads were fitted on); their scales and shifts still train."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def lr_at(progress: float, peak: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` epochs-fraction, then cosine to 2% of peak."""
    if progress < warmup:
        return peak * max(progress / warmup, 0.02)
    t = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_NAMES, required=True)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "dataset",
                        help="dataset whose train/ shards are trained on and whose heldout/ shards are watched")
    parser.add_argument("--extra-train", type=lambda s: [Path(p) for p in s.split(",") if p], default=[],
                        help="more datasets (comma-separated) whose train/ shards are trained on too")
    parser.add_argument("--calibration", action="store_true",
                        help="keep every 10th training shard out of training (for export.fit_aqs)")
    parser.add_argument("--exclude-generators", type=lambda s: frozenset(g for g in s.split(",") if g), default=frozenset(),
                        help="leave out training windows made by these generators (export.build_dataset.GENERATORS)")
    parser.add_argument("--pretrained", type=Path,
                        help="start the backbone from these ImageNet weights (export.pretrained's safetensors)")
    parser.add_argument("--backbone-lr-scale", type=float, default=1.0,
                        help="learning rate of the backbone relative to --lr (below 1 to fine-tune pretrained weights)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.05, help="warm-up as a fraction of all epochs")
    parser.add_argument("--key-frames", type=lambda s: tuple(int(k) for k in s.split(",")), default=DEFAULT_KEY_FRAMES)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop-fragments", type=int, default=0,
                        help="train on random K x K fragment crops of the 7x7 mosaic (0: whole mosaic)")
    parser.add_argument("--full-epochs", type=int, default=1,
                        help="with --crop-fragments: the last N epochs train on the whole mosaic")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, help="start from these weights (a weights.pt or a shipped .safetensors) instead of random ones")
    parser.add_argument("--freeze-norm", action="store_true",
                        help="keep every batch-norm layer's running statistics as initialised (fine-tuning with --init)")
    parser.add_argument("--aqs-loss", type=float, default=0.0, help="weight of the L1 loss on AQS (0: off)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (tests)")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="stop after the epoch that passes this much training time (0: no limit)")
    parser.add_argument("--wait-for-data", type=float, default=0.0, help="seconds to wait for the first shard")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = args.runs / args.model
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text("python -m export.train " + " ".join(argv if argv is not None else sys.argv[1:]) + "\n")
    train_cache = ShardCache(args.data / "train", *(d / "train" for d in args.extra_train),
                             use=(lambda p: not is_calibration_shard(p)) if args.calibration else (lambda p: True),
                             exclude_generators=args.exclude_generators)
    heldout_cache = ShardCache(args.data / "heldout")

    torch.manual_seed(args.seed)
    model = build_model(args.model, key_frames=args.key_frames)
    if args.pretrained:
        left = init_backbone(model.backbone, load_lite0_imagenet(args.pretrained))
        print(f"backbone from {args.pretrained}; {len(left)} backbone tensors left as initialised", file=sys.stderr)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(parameter_groups(model, args.weight_decay, args.backbone_lr_scale), lr=args.lr)
    start_epoch, elapsed = 0, 0.0
    fresh = list(model.state_dict()) if not args.init else []
    if args.init:
        fresh = load_matching(model, read_state(args.init), args.init)
        if fresh:
            print(f"initialised afresh (not in {args.init}): {', '.join(fresh)}", file=sys.stderr)
    if args.resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, elapsed = int(state["epoch"]) + 1, float(state["elapsed_s"])
        print(f"resuming {args.model} after epoch {start_epoch} ({elapsed / 60:.1f} min so far)", file=sys.stderr)
    elif (out / "log.jsonl").exists():
        (out / "log.jsonl").unlink()

    deadline = time.monotonic() + args.wait_for_data
    while (train := train_cache.refresh()) is None:
        if time.monotonic() > deadline:
            print(f"no training shards under {args.data / 'train'}", file=sys.stderr)
            return 1
        time.sleep(20)
    if model.statistics is not None and start_epoch == 0 and "statistics_mean" in fresh:
        sample = np.random.default_rng(args.seed).permutation(len(train))[:STATISTICS_SAMPLE]
        values = extract_features(train.windows[np.sort(sample)], spatial_frames=GRAPH_SPATIAL_FRAMES)
        fit_statistics_scaling(model, values[:, list(STATISTICS_COLUMNS)])

    for epoch in range(start_epoch, args.epochs):
        started = time.monotonic()
        train = train_cache.refresh()
        rng = np.random.default_rng([args.seed, epoch])
        torch.manual_seed(args.seed * 1000 + epoch)
        order = rng.permutation(len(train))
        crop = args.crop_fragments if epoch < args.epochs - args.full_epochs else 0
        steps = len(order) // args.batch_size
        if args.max_steps:
            steps = min(steps, args.max_steps)
        train_mode(model, freeze_norm=args.freeze_norm)
        totals: dict[str, float] = {}
        bar = tqdm(range(steps), desc=f"{args.model} epoch {epoch + 1}/{args.epochs}", unit="batch",
                   mininterval=5.0 if sys.stderr.isatty() else 60.0, dynamic_ncols=True)
        for step in bar:
            lr = lr_at((epoch + step / max(steps, 1)) / args.epochs, args.lr, args.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            windows, (quality, presence, intensity) = batch_tensors(train, index, rng.random(len(index)) < 0.5, device,
                                                                    crop=crop, rng=rng)
            parts = losses(model(windows), quality, presence, intensity, args.aqs_loss)
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{totals['total'] / (step + 1):.4f}", lr=f"{lr:.2e}", refresh=False)
        bar.close()
        record = {
            "epoch": epoch + 1,
            "train_windows": len(train),
            "steps": steps,
            "crop_fragments": crop or FRAGMENT_GRID,
            **{f"train_loss_{k}": v / max(steps, 1) for k, v in totals.items()},
        }
        heldout = heldout_cache.refresh()
        if heldout is not None:
            record.update(heldout_metrics(model, heldout, device))
        elapsed += time.monotonic() - started
        record["elapsed_s"] = round(elapsed, 1)
        record["device"] = str(device)
        if args.init:
            record["init"] = str(args.init)
        if args.pretrained:
            record["pretrained"] = str(args.pretrained)
        if args.freeze_norm:
            record["freeze_norm"] = True
        if args.exclude_generators:
            record["excluded_generators"] = sorted(args.exclude_generators)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "elapsed_s": elapsed}, out / "last.pt.tmp")
        os.replace(out / "last.pt.tmp", out / "last.pt")
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.pt")
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items() if k != "heldout_auc"}
        print(json.dumps(summary), flush=True)
        if args.max_minutes and elapsed > 60 * args.max_minutes and epoch + 1 < args.epochs:
            print(f"stopping after epoch {epoch + 1}: {elapsed / 60:.1f} min > --max-minutes {args.max_minutes}",
                  file=sys.stderr)
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
