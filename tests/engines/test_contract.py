"""The model contract's outputs, with and without the optional per-fragment map."""
from __future__ import annotations

import numpy as np
import pytest

from engines.contract import MAP_SHAPE, NUM_ARTIFACTS, ModelOutputs


def _outputs(n: int, artifact_map: np.ndarray | None = None) -> ModelOutputs:
    return ModelOutputs(np.zeros(n, np.float32), np.zeros((n, NUM_ARTIFACTS), np.float32),
                        np.zeros((n, NUM_ARTIFACTS), np.float32), artifact_map)


def test_outputs_without_a_map_validate_and_give_no_map_probabilities():
    out = _outputs(3).validate(3)
    assert out.artifact_map is None and out.artifact_map_probabilities is None


def test_a_map_of_the_contract_shape_validates_and_gives_probabilities():
    amap = np.full((2, *MAP_SHAPE), 2.0, np.float32)
    out = _outputs(2, amap).validate(2)
    probabilities = out.artifact_map_probabilities
    assert probabilities.shape == (2, NUM_ARTIFACTS, 7, 7)
    np.testing.assert_allclose(probabilities, 1.0 / (1.0 + np.exp(-2.0)), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, NUM_ARTIFACTS, 49), (3, *MAP_SHAPE), (2, NUM_ARTIFACTS, 7, 6)])
def test_a_map_of_another_shape_is_refused_naming_it(shape):
    with pytest.raises(ValueError, match="artifact_map"):
        _outputs(2, np.zeros(shape, np.float32)).validate(2)
