"""Put the current classical-statistics graph into exported ONNX models, every other node and weight
kept as it is.

    python -m export.regraph_statistics engines/models/aqs_effnet_b0.onnx engines/models/aqs_effnet_b0.int8.onnx \
        engines/models/aqs_effnet_lite0.onnx engines/models/aqs_effnet_lite0.int8.onnx

The statistics (:class:`engines.architectures.statistics.ClassicalStatistics`) are measurements, not
learned: they hold no weights (their standardisation lives outside them, in the network). So a model
exported before the statistics were re-formulated can take the new formulation of the same
measurements without retraining, and its int8 file keeps its calibration. The new subgraph reads the
float window (the graph's cast of its input) and the temporal branch's luma/difference map (the
float 1x1 convolution over the 21 colour planes), as :class:`~engines.architectures.aqs_net.AQSNet`
does now, and writes the tensor the old subgraph wrote.

Each file is checked against its previous self on real windows of the demo clip (the largest output
difference is printed and must stay below ``--atol``); ``manifest.json`` and the model card's file
table beside them get the new checksums.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import onnx
import torch

from engines.architectures.aqs_net import TemporalBranch
from engines.architectures.statistics import ClassicalStatistics
from engines.contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAMES, WINDOW_FRAMES
from export.export_onnx import OPSET
from export.model_card import CARD, refresh_file_table

PREFIX = "statistics/"
DEMO_CLIP = Path(__file__).resolve().parent.parent / "monitor" / "demo" / "demo.mp4"
MIXED_CHANNELS = WINDOW_FRAMES + (WINDOW_FRAMES - 1)


class _StatisticsOnMixed(torch.nn.Module):
    """The statistics as the network computes them: from the float window and the temporal mix."""

    def __init__(self) -> None:
        super().__init__()
        self.statistics = ClassicalStatistics()

    def forward(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        return self.statistics(x, TemporalBranch.frame_steps(mixed))


def statistics_graph() -> onnx.ModelProto:
    """:class:`_StatisticsOnMixed` exported alone: inputs ``x`` and ``mixed``, output ``statistics``."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = (torch.zeros((2, *INPUT_SHAPE)), torch.zeros((2, MIXED_CHANNELS, *INPUT_SHAPE[-2:])))
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(_StatisticsOnMixed().eval(), example, input_names=["x", "mixed"],
                                    output_names=["statistics"], opset_version=OPSET, dynamo=True,
                                    dynamic_shapes=({0: batch}, {0: batch}), verbose=False)
        program.optimize()
        path = Path(tmp) / "statistics.onnx"
        program.save(str(path), external_data=False)
        return onnx.load(str(path))


def _namespace(node: onnx.NodeProto) -> str:
    return next((p.value for p in node.metadata_props if p.key == "namespace"), "")


def _attachments(graph: onnx.GraphProto, old: list[onnx.NodeProto]) -> tuple[str, str, str]:
    """The float window, the temporal mix and the old statistics' output tensor of ``graph`` (the one the
    network standardises with ``statistics_mean``)."""
    produced = {name for node in old for name in node.output}
    used_outside = {name for node in graph.node if node not in old for name in node.input} & produced
    standardised = {node.input[0] for node in graph.node if node.op_type == "Sub" and node.input[1] == "statistics_mean"}
    outputs = used_outside & standardised if len(used_outside) > 1 else used_outside
    if len(outputs) != 1:
        raise ValueError(f"the statistics subgraph should have one output used elsewhere, found {sorted(used_outside)}")
    casts = [n for n in graph.node if n.op_type == "Cast" and n.input[0] == INPUT_NAME]
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    mixes = [n for n in graph.node if n.op_type == "Conv" and len(weights.get(n.input[1], ())) == 4
             and weights[n.input[1]][:2] == (MIXED_CHANNELS, 3 * WINDOW_FRAMES)]
    if len(casts) != 1 or len(mixes) != 1:
        raise ValueError(f"expected one cast of {INPUT_NAME!r} and one temporal mix, found {len(casts)} and {len(mixes)}")
    return casts[0].output[0], mixes[0].output[0], outputs.pop()


def _only_for_statistics(graph: onnx.GraphProto, old: list[onnx.NodeProto], output: str) -> list[onnx.NodeProto]:
    """The nodes of ``old`` that nothing but the statistics output needs. A fresh export can share a
    node of the statistics with the rest of the network (the key-frame selection the backbone also
    reads): such a node, and what it reads inside the statistics, stays."""
    ids = {id(n) for n in old}
    producer = {t: n for n in old for t in n.output}
    needed = [producer[t] for n in graph.node if id(n) not in ids for t in n.input if t in producer and t != output]
    shared: set[int] = set()
    while needed:
        node = needed.pop()
        if id(node) not in shared:
            shared.add(id(node))
            needed.extend(producer[t] for t in node.input if t in producer)
    return [n for n in old if id(n) not in shared]


def _renamed(sub: onnx.GraphProto, inputs: dict[str, str], output: str) -> tuple[list, list]:
    """``sub``'s nodes and initializers, every name prefixed, its inputs and output wired to ``graph``'s."""
    def name(tensor: str) -> str:
        if not tensor:
            return tensor
        if tensor in inputs:
            return inputs[tensor]
        return output if tensor == "statistics" else PREFIX + tensor

    nodes = []
    for node in sub.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = PREFIX + node.name
        copy.input[:] = [name(t) for t in node.input]
        copy.output[:] = [name(t) for t in node.output]
        nodes.append(copy)
    inits = []
    for init in sub.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = name(init.name)
        inits.append(copy)
    return nodes, inits


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    producers = {out: i for i, node in enumerate(nodes) for out in node.output}
    waiting = [sum(1 for t in set(node.input) if t and t not in available and t in producers) for node in nodes]
    users: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in set(node.input):
            if t and t not in available and t in producers:
                users.setdefault(producers[t], []).append(i)
    ready = deque(i for i, count in enumerate(waiting) if count == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(nodes[i])
        for j in users.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) != len(nodes):
        raise ValueError("the regraphed model has a cycle or a missing input")
    return order


def statistics_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes of the classical statistics: the exporter's module path, or this tool's prefix."""
    nodes = [n for n in graph.node if "/statistics" in _namespace(n) or n.name.startswith(PREFIX)]
    if not nodes:
        raise ValueError("the model has no classical statistics subgraph")
    return nodes


def statistics_output(graph: onnx.GraphProto) -> str:
    """The name of the raw statistics tensor ``[N, NUM_STATISTICS]`` inside ``graph``."""
    return _attachments(graph, statistics_nodes(graph))[2]


def regraph(model: onnx.ModelProto, sub: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its statistics subgraph replaced by ``sub`` (from :func:`statistics_graph`)."""
    graph = model.graph
    statistics = statistics_nodes(graph)
    window, mixed, output = _attachments(graph, statistics)
    old = _only_for_statistics(graph, statistics, output)
    nodes, inits = _renamed(sub.graph, {"x": window, "mixed": mixed}, output)
    old_ids = {id(n) for n in old}
    others = [n for n in graph.node if id(n) not in old_ids]
    used = {t for n in others for t in n.input}
    initializers = [i for i in graph.initializer if i.name in used] + inits
    kept = others + nodes
    available = {i.name for i in initializers} | {i.name for i in graph.input}
    del graph.node[:]
    graph.node.extend(_topological(kept, available))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    produced = {t for n in graph.node for t in n.output}
    keep_info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(keep_info)
    for opset in sub.opset_import:
        if not any(o.domain == opset.domain for o in model.opset_import):
            model.opset_import.append(opset)
    onnx.checker.check_model(model)
    return model


def demo_windows(count: int = 8) -> np.ndarray:
    """Back-to-back windows of the demo clip, fragments sampled as the daemon samples them."""
    import av

    from engines.sampler import grid_offsets, planes_from_frame, sample_frame

    out = np.empty((count, *INPUT_SHAPE), dtype=np.uint8)
    with av.open(str(DEMO_CLIP)) as container:
        for i, frame in zip(range(count * WINDOW_FRAMES), container.decode(video=0)):
            planes = planes_from_frame(frame)
            offsets = grid_offsets(frame.height, frame.width, np.random.default_rng(i // WINDOW_FRAMES))
            sample_frame(planes, offsets, out[i // WINDOW_FRAMES, i % WINDOW_FRAMES])
    return out


def largest_difference(before: Path | bytes, after: Path | bytes, windows: np.ndarray) -> float:
    import onnxruntime as ort

    def outputs(model: Path | bytes) -> list[np.ndarray]:
        source = str(model) if isinstance(model, Path) else model
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        return session.run(list(OUTPUT_NAMES), {INPUT_NAME: windows})

    return max(float(np.abs(a - b).max()) for a, b in zip(outputs(before), outputs(after)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.regraph_statistics", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files to rewrite in place")
    parser.add_argument("--atol", type=float, default=1e-3, help="largest output difference allowed (default: %(default)s)")
    args = parser.parse_args(argv)
    sub = statistics_graph()
    windows = demo_windows()
    for path in args.models:
        new = regraph(onnx.load(str(path)), sub).SerializeToString()
        diff = largest_difference(path, new, windows)
        print(f"{path}: largest output difference {diff:.2e} on {len(windows)} demo windows")
        if diff > args.atol:
            print(f"{path}: not rewritten (> {args.atol})", file=sys.stderr)
            return 1
        path.write_bytes(new)
    for folder in sorted({path.parent for path in args.models}):
        if (folder / CARD).exists():
            refresh_file_table(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
