"""A small ONNX graph writer, with which the numpy layers (layers/) write their own nodes.

The exported decoders (export.py) are the package's numpy layers written out node by node — the
same weights, matrices and geometry — not a second implementation. Float constants are stored
float32; a float64 graph casts them in the graph (the fixed-point h_s: its weights have ≤ 15
significant bits and its biases are integers below 2^24, exact in float32, at half the size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: ONNX opset of the graphs (tested with ONNX Runtime 1.32).
OPSET = 17
_END = np.iinfo(np.int64).max


class Graph:
    """An ONNX graph under construction; values are named by strings.

    Args:
        dtype: the float type of the graph's values, np.float32 or np.float64.
    """

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def _name(self, prefix: str) -> str:
        return f"{prefix}_{len(self.nodes) + len(self.initializers)}"

    def node(self, op: str, inputs: Sequence[str], **attributes) -> str:
        """Add one node of ``op`` with one output; returns the output's name."""
        out = self._name(op)
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attributes))
        return out

    def constant(self, array: np.ndarray) -> str:
        """A float constant of the graph's type, stored float32 (and cast for a float64 graph).

        Raises:
            ValueError: a float64 graph's constant that float32 does not hold exactly.
        """
        stored = np.asarray(array).astype(np.float32)
        if self.dtype == np.float64 and not np.array_equal(stored, array):
            raise ValueError("a constant of a float64 graph is not exact in float32")
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(stored, name))
        return name if self.dtype == np.float32 else self.node("Cast", [name], to=TensorProto.DOUBLE)

    def ints(self, values: Sequence[int]) -> str:
        """An int64 constant (shapes, pads, slice bounds)."""
        name = self._name("ints")
        self.initializers.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def slice(self, x: str, starts: Sequence[int], stops: Sequence[int], axes: Sequence[int] = (2, 3)) -> str:
        """x[starts:stops] along ``axes``; a stop ≤ 0 counts from the end (0: to the end), so shapes stay dynamic."""
        ends = [_END if stop == 0 else stop for stop in stops]
        return self.node("Slice", [x, self.ints(starts), self.ints(ends), self.ints(axes)])

    def model(self, inputs: dict[str, tuple[str, ...]], outputs: dict[str, tuple[str, tuple[str, ...]]],
              doc: str, properties: dict[str, str]) -> bytes:
        """The checked model (bytes).

        Args:
            inputs: input name → its shape, ints or axis names (e.g. (1, 320, "h", "w")).
            outputs: output name → (the value it is, its shape).
            doc: the model's doc_string; properties: its metadata_props.
        """
        kind = helper.np_dtype_to_tensor_dtype(self.dtype)
        nodes = self.nodes + [helper.make_node("Identity", [value], [name]) for name, (value, _) in outputs.items()]
        graph = helper.make_graph(
            nodes, "shallowcodec", [helper.make_tensor_value_info(n, kind, shape) for n, shape in inputs.items()],
            [helper.make_tensor_value_info(n, kind, shape) for n, (_, shape) in outputs.items()], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="shallowcodec", doc_string=doc)
        model.ir_version = min(model.ir_version, 8)  # ONNX Runtime 1.32 reads IR ≤ 10; 8 is opset 17's
        helper.set_model_props(model, properties)
        onnx.checker.check_model(model, full_check=True)
        return model.SerializeToString()
