"""The ImageNet EfficientNet-Lite0 checkpoint (export/pretrained.py), converted and used for real."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from engines.architectures.efficientnet import EfficientNetB0, EfficientNetLite0  # noqa: E402
from export import pretrained as P  # noqa: E402


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory):
    try:
        P.lite0_checkpoint()
    except ImportError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("pretrained") / "lite0.safetensors"
    assert P.main(["--out", str(out)]) == 0
    return P.load_lite0_imagenet(out)


def test_every_checkpoint_tensor_finds_its_place(imagenet_weights):
    model = EfficientNetLite0(num_classes=1000)
    assert set(imagenet_weights) == set(model.state_dict())
    assert len(P.lite0_key_map()) == 296


def test_converted_weights_recognise_a_photograph(imagenet_weights):
    skimage_data = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    model = EfficientNetLite0(num_classes=1000).eval()
    model.load_state_dict(imagenet_weights)
    image = cv2.resize(skimage_data.coffee(), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, std = np.array(model.input_mean, np.float32), np.array(model.input_std, np.float32)
    x = torch.from_numpy((image - mean) / std).permute(2, 0, 1)[None]
    with torch.no_grad():
        probabilities = torch.softmax(model(x), 1)[0]
    assert int(probabilities.argmax()) == 967 and float(probabilities.max()) > 0.5  # ImageNet "espresso"


def test_a_b0_starts_from_lite0_with_only_its_gates_fresh_and_open(imagenet_weights):
    backbone = EfficientNetB0()
    fresh = P.init_backbone(backbone, imagenet_weights)
    assert fresh and all(".fc1." in name or ".fc2." in name for name in fresh)  # only squeeze-excitation is new
    gate = backbone.features[2][0].block[2]
    assert float(torch.sigmoid(gate.fc2.bias).min()) > 0.9 and float(gate.fc2.weight.abs().max()) == 0.0
    assert torch.equal(backbone.features[0][0].weight, imagenet_weights["features.0.0.weight"])


def test_weights_of_another_shape_are_refused(imagenet_weights):
    bad = dict(imagenet_weights)
    bad["features.0.0.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(ValueError, match="no place"):
        P.init_backbone(EfficientNetLite0(), bad)
    with pytest.raises(ValueError, match="not the EfficientNet-Lite0 checkpoint"):
        P.convert_lite0({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)})
