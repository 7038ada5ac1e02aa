"""docs/configuration.md is generated from the config models' Field descriptions and must be current."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from monitor.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import build_config_reference as config_reference  # noqa: E402


def test_committed_reference_matches_generator():
    committed = config_reference.OUT.read_text() if config_reference.OUT.is_file() else ""
    assert committed == config_reference.render(), (
        f"docs/configuration.md is stale: run {config_reference.REGENERATE}")
    assert config_reference.main(["--check"]) == 0


def test_check_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(config_reference.render().replace("`16`", "`32`"))
    assert config_reference.main(["--check", "--out", str(stale)]) == 1
    assert config_reference.REGENERATE in capsys.readouterr().err
    assert config_reference.main(["--check", "--out", str(tmp_path / "missing.md")]) == 1


def test_rows_carry_type_default_range_and_description():
    rows = {row.path: row for row in config_reference.keys(Config, "", homes={})}
    batch = rows["engine.max_batch"]
    assert (batch.type, batch.default, batch.allowed) == ("int, strict", "`16`", "1..256")
    assert batch.meaning.startswith("Most windows per inference call")
    assert rows["engine.threads"].type == "int, or null, strict"
    assert rows["checks.frame_rate.tolerance"].allowed == "> 0, < 1"
    assert rows["checks.freeze.min_duration"].allowed == "> 0, <= 600"
    assert rows["metrics.listen"].default == '`"127.0.0.1:9108"`'
    assert rows["defaults.ffmpeg_options"].type == "map string -> string"
    assert rows["streams[].name"].default == "required"


def test_every_key_of_the_file_is_in_the_reference():
    text = config_reference.render()
    for path in ("streams[].name", "streams[].url", "streams[].checks", "metrics.listen", "engine.prefer",
                 "defaults.reconnect_max_s", "checks.no_video.timeout", "checks.bitrate.window",
                 "quality.exit_margin", "shard.capacity"):
        assert f"| `{path}` |" in text, path
    assert "| `streams[].stride` |" not in text  # per-stream options are documented once, under defaults
    assert "| `streams[].checks.black.enabled` |" not in text  # and a stream's checks once, under checks


def test_a_key_without_a_description_is_refused():
    class Section(BaseModel):
        documented: int = Field(1, description="has one")
        bare: int = 2

    with pytest.raises(ValueError, match=r"section\.bare: no description"):
        config_reference.keys(Section, "section.")


def _leaf_paths(data: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:
            paths |= _leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


def test_shipped_config_sets_every_key_to_its_default():
    """config.yaml's header says so and sends the reader to the reference for what they mean."""
    shipped_path = ROOT / "config.yaml"
    shipped = load_config(shipped_path).model_dump()
    defaults = Config().model_dump()
    for section in defaults.keys() - {"streams"}:
        assert shipped[section] == defaults[section], section
    written = yaml.safe_load(shipped_path.read_text())
    del written["streams"]
    del defaults["streams"]
    assert _leaf_paths(written) == _leaf_paths(defaults)
    assert "docs/configuration.md" in shipped_path.read_text()
