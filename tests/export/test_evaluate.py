"""export.evaluate scores real files with the model files it is given, not always the shipped ones."""
from __future__ import annotations

import json
import shutil

import pytest

from engines.modelfiles import DEFAULT_MODEL_DIR
from export.evaluate import score_files

ENGINE = "onnxruntime:aqs_effnet_b0"


def default_only(directory):
    """A model directory with only the default's files, the AQS parameters and a manifest of them."""
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k.startswith("aqs_effnet_b0")}
    directory.mkdir()
    for name in [*manifest["files"], "aqs.json"]:
        shutil.copy2(DEFAULT_MODEL_DIR / name, directory / name)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_real_files_are_scored_with_the_model_directory_given(tmp_path, test_clip):
    shipped = score_files([test_clip], ENGINE)
    copied = score_files([test_clip], ENGINE, default_only(tmp_path / "copy"))
    assert copied[0]["aqs"] == pytest.approx(shipped[0]["aqs"], abs=1e-6)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError):
        score_files([test_clip], ENGINE, empty)
