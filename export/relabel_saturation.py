"""Bring a dataset built before the saturation revision to the current definition (in place, once).

    .venv/bin/python -m export.relabel_saturation data/dataset data/v2/dataset ...

Before the revision, the saturation label depended on the factor alone, and desaturation went down
to grey. Now :func:`export.degrade.saturation_labels` scales the label by how much colour the picture
had (changing the saturation of a grey photograph changes nothing), and the plan stops desaturating at
``build_dataset.DESATURATION_FACTORS[0]``: a near-grey picture cannot be told from monochrome content
without a reference, and monochrome content is clean. So, per dataset:

* clips desaturated below that factor are removed from the shards and the per-clip metadata;
* every other saturation clip is relabelled from the mean HSV saturation of its reference file (the
  generator measured its input frames, which differ from the reference only by any blur applied
  before; the reference is decoded from 4:2:0, so this reads a little low on sharp colour edges).

What was done is kept in ``revisions.json`` beside the manifest, and the manifest is rewritten.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from engines.contract import ARTIFACTS
from export import degrade as D
from export.build_dataset import DESATURATION_FACTORS, split_counts

REVISION = "saturation-labels-2"
SATURATION = ARTIFACTS.index("saturation")


def revise_clip(meta: dict) -> dict | None:
    """The clip's new metadata, ``None`` if it is removed, or the same dict if saturation is not involved."""
    ops = [o for o in meta["ops"] if o["op"] == "saturation"]
    if not ops:
        return meta
    factor = float(ops[0]["factor"])
    if factor < DESATURATION_FACTORS[0]:
        return None
    labels = D.saturation_labels(factor, D.mean_saturation(D.decode_rgb(meta["reference"])))
    presence, intensity = list(meta["presence"]), list(meta["intensity"])
    presence[SATURATION] = float(labels.presence[SATURATION])
    intensity[SATURATION] = round(float(labels.intensity[SATURATION]), 4)
    names = [a for a, p in zip(ARTIFACTS, presence) if p]
    return {**meta, "presence": presence, "intensity": intensity, "artifacts": names}


def rewrite_shard(path: Path, dropped: set[int], revised: dict[int, dict]) -> None:
    """Drop the windows of ``dropped`` clips and set the saturation labels of ``revised`` ones."""
    with np.load(path, allow_pickle=False) as z:
        if not np.isin(z["clip_id"], list(dropped | set(revised))).any():
            return
        arrays = {key: z[key] for key in z.files}
    keep = ~np.isin(arrays["clip_id"], list(dropped))
    arrays = {key: value[keep] for key, value in arrays.items()}
    for row, clip_id in enumerate(arrays["clip_id"]):
        meta = revised.get(int(clip_id))
        if meta is not None:
            arrays["presence"][row, SATURATION] = meta["presence"][SATURATION]
            arrays["intensity"][row, SATURATION] = meta["intensity"][SATURATION]
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def revise_dataset(out: Path) -> dict:
    revisions_path = out / "revisions.json"
    revisions = json.loads(revisions_path.read_text()) if revisions_path.exists() else []
    if any(r["revision"] == REVISION for r in revisions):
        print(f"{out}: already at {REVISION}")
        return {}
    manifest = json.loads((out / "manifest.json").read_text())
    dropped: dict[str, set[int]] = {"train": set(), "heldout": set()}
    revised: dict[int, dict] = {}
    for meta in manifest["clips"]:
        new = revise_clip(meta)
        if new is None:
            dropped[meta["split"]].add(meta["clip_id"])
        elif new is not meta:
            revised[meta["clip_id"]] = new
    for split in ("train", "heldout"):
        for shard in sorted((out / split).glob("shard_*.npz")):
            rewrite_shard(shard, dropped[split], revised)
    for clip_id in set().union(*dropped.values()):
        (out / "_meta" / f"{clip_id:05d}.json").unlink(missing_ok=True)
    for clip_id, meta in revised.items():
        _write_json(out / "_meta" / f"{clip_id:05d}.json", meta)
    record = {
        "revision": REVISION,
        "removed_clips": {split: sorted(ids) for split, ids in dropped.items()},
        "relabelled_clips": sorted(revised),
        "saturation_now_absent": sorted(i for i, m in revised.items() if not m["presence"][SATURATION]),
    }
    _write_json(revisions_path, revisions + [record])
    manifest["clips"] = [revised.get(m["clip_id"], m) for m in manifest["clips"]
                         if m["clip_id"] not in dropped[m["split"]]]
    for split, counts in manifest["counts"].items():
        metas = [m for m in manifest["clips"] if m["split"] == split]  # a finished dataset: all in shards
        manifest["counts"][split] = split_counts(metas, metas, counts["clips_planned"], counts["shards"])
    manifest["revisions"] = revisions + [record]
    _write_json(out / "manifest.json", manifest)
    return record


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset folders (with manifest.json)")
    args = parser.parse_args(argv)
    for out in args.datasets:
        record = revise_dataset(out)
        if record:
            removed = sum(len(v) for v in record["removed_clips"].values())
            print(f"{out}: removed {removed} near-grey desaturated clips, relabelled {len(record['relabelled_clips'])}"
                  f" saturation clips ({len(record['saturation_now_absent'])} now without the label)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
