"""The classical statistics inside the shipped ONNX files are today's definition, and the tool that
puts a new definition into exported files keeps every other output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from engines.architectures import WITH_STATISTICS as ARCHITECTURES  # noqa: E402
from engines.contract import INPUT_NAME, OUTPUT_NAMES  # noqa: E402
from engines.modelfiles import read_manifest  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "engines" / "models"
WITH_STATISTICS = sorted(name for name, entry in read_manifest(MODELS).items()
                         if name.endswith(".onnx") and entry.architecture in ARCHITECTURES)


def _with_statistics_output(path: Path) -> bytes:
    from export.regraph_statistics import statistics_output

    model = onnx.load(str(path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(statistics_output(model.graph), onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


@pytest.mark.parametrize("name", WITH_STATISTICS)
def test_shipped_graph_statistics_are_the_current_definition(name, sampled_windows):
    from engines.architectures.statistics import ClassicalStatistics

    windows = sampled_windows(3)
    session = ort.InferenceSession(_with_statistics_output(MODELS / name), providers=["CPUExecutionProvider"])
    in_graph = session.run(None, {INPUT_NAME: windows})[-1]
    with torch.no_grad():
        expected = ClassicalStatistics()(torch.from_numpy(windows).float()).numpy()
    np.testing.assert_allclose(in_graph, expected, rtol=1e-4, atol=1e-4)


def test_regraph_keeps_the_outputs_and_refuses_a_model_without_statistics(tmp_path, sampled_windows):
    from export.regraph_statistics import largest_difference, regraph, statistics_graph

    assert "aqs_effnet_b0.onnx" in WITH_STATISTICS
    sub = statistics_graph()
    source = MODELS / "aqs_effnet_b0.onnx"
    again = regraph(onnx.load(str(source)), sub).SerializeToString()
    assert largest_difference(source, again, sampled_windows(2)) < 1e-5
    session = ort.InferenceSession(again, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    without = next(p for p in sorted(MODELS.glob("*.onnx")) if p.name not in WITH_STATISTICS)
    with pytest.raises(ValueError, match="no classical statistics"):
        regraph(onnx.load(str(without)), sub)
