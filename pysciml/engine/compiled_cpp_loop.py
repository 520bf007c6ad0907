"""The forward graph of a differentiated ``torch.while_loop`` program under inductor's C++ wrapper.

``while_loop``'s autograd runs its forward as ``while_loop_stack_output``: the loop, plus a stack of every
iteration's carries (``(n_iter, *carry)``, ``n_iter`` an unbacked size) that the backward's reverse loop reads. In
torch 2.13 inductor lowers that operator (``ir.WhileLoop`` with ``stack_output``) and its Python wrapper generates it
(a host ``while`` appending each iteration's carries to lists, ``torch.stack`` after), but the C++ wrapper's
``codegen_while_loop`` raises ``NotImplementedError("NYI cpp wrapper for while_loop_stack_output")``: nothing else
fails (the lowering, the unbacked ``n_iter`` and the outputs' layouts are the wrapper-independent parts). So such
forward graphs ran on the Python wrapper, whose per-iteration work (Python lines, size asserts, buffer handling) was
most of the spiral training iteration's loop program (``benchmarks/neural_ode.py``).

:func:`stack_output_codegen` fills that gap for the graphs pysciml compiles, while they compile: a subclass of
inductor's ``CppWrapperCpu`` whose ``codegen_while_loop`` generates the stacked form (the parent's loop, each
iteration's carries kept as ``(1, numel)`` views in a ``std::vector``, one ``aoti_torch_cpu_cat`` per carry after the
loop, viewed as ``(n_iter, *carry)``; a loop that never turns stacks its initial carries, as the Python wrapper
does), and the plain loop as the parent does. The subclass is the CPU entry of inductor's wrapper registry only
inside the context (:func:`~.compiled_parts._cpp_backward_inner` enters it around one ``compile_fx_inner`` call);
outside it, inductor's own class is back. It generates only what it can prove the layout of: static shapes, carries
and stacked outputs contiguous; anything else raises ``NotImplementedError`` as before, and the caller compiles that
graph on the Python wrapper instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["has_stack_output", "stack_output_codegen", "stack_output_key"]


def has_stack_output(gm: torch.fx.GraphModule) -> bool:
    """Whether ``gm`` (an AOTAutograd forward graph) runs a ``while_loop_stack_output``."""
    op = torch.ops.higher_order.while_loop_stack_output
    return any(n.op == "call_function" and n.target is op for n in gm.graph.nodes)


_WRAPPER_TYPE: Any = None
_KEY: list[str] = []


def stack_output_key() -> str:
    """A hash of this file, for the cache keys of the programs whose forward graphs it generates."""
    if not _KEY:
        with open(__file__, "rb") as source:
            _KEY.append("cpp forward " + hashlib.sha256(source.read()).hexdigest()[:16])
    return _KEY[0]


def _static(values: Any) -> list[int] | None:
    """``values`` (sizes or strides of an inductor layout) as Python ints, ``None`` if any is symbolic."""
    try:
        return [int(v) for v in values]
    except TypeError:
        return None


def _contiguous(size: list[int], stride: list[int]) -> bool:
    """Whether ``stride`` is the contiguous layout of ``size`` (strides of dimensions of size 1 are free)."""
    expected = 1
    for n, s in zip(reversed(size), reversed(stride), strict=True):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _array(values: list[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def _wrapper_type() -> Any:
    """The ``CppWrapperCpu`` subclass (built on the first call: ``import pysciml`` does not import inductor)."""
    global _WRAPPER_TYPE
    if _WRAPPER_TYPE is not None:
        return _WRAPPER_TYPE
    from torch._inductor import ir
    from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu
    from torch._inductor.codegen.wrapper import EnterSubgraphLine, ExitSubgraphLine

    class StackOutputCppWrapper(CppWrapperCpu):
        """inductor's C++ wrapper for the CPU, with ``while_loop_stack_output`` (see the module docstring)."""

        @staticmethod
        def create(is_subgraph: bool, subgraph_name: str | None, parent_wrapper: Any,
                   partition_signatures: Any = None) -> StackOutputCppWrapper:
            return StackOutputCppWrapper()

        def codegen_while_loop(self, while_loop: Any, stack_output: bool = False) -> None:
            if not stack_output:
                super().codegen_while_loop(while_loop, stack_output)
                return
            carried = list(while_loop.carried_inputs)
            outputs = list(while_loop.outputs)
            if while_loop.mutation_outputs or len(outputs) != len(carried):
                raise NotImplementedError("while_loop_stack_output with mutated carries")
            shapes = []
            for inp, out in zip(carried, outputs, strict=True):
                size, stride = _static(inp.get_size()), _static(inp.get_stride())
                out_stride = _static(out.get_stride())
                if size is None or stride is None or out_stride is None or not _contiguous(size, stride) \
                        or not _contiguous([2, *size], out_stride):  # 2: any n_iter > 1
                    raise NotImplementedError("while_loop_stack_output with a non-contiguous or dynamic carry")
                shapes.append((size, out_stride))
            self._stacked_loop(while_loop, shapes, EnterSubgraphLine, ExitSubgraphLine, ir.ShapeAsConstantBuffer)

        def _stacked_loop(self, loop: Any, shapes: list[tuple[list[int], list[int]]], enter: Any, leave: Any,
                          as_constant: Any) -> None:
            """The loop of :meth:`codegen_while_loop`'s stacked form; ``shapes``: each carry's static size and its
            stacked output's strides."""
            name = loop.get_name()
            bool_pred = isinstance(loop.cond_subgraph.graph.graph_outputs[0], as_constant)
            cond = f"{name}_cond_result"
            self.writeline(f"bool {cond};" if bool_pred else f"RAIIAtenTensorHandle {cond};")
            carries = [f"{name}_carry{i}" for i in range(len(shapes))]
            for buf, carry in zip(loop.carried_inputs, carries, strict=True):
                self.writeline(f"AtenTensorHandle {carry}_handle;")
                self.writeline(f"AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_assign_tensors_out("
                               f"{buf.codegen_reference()}, &{carry}_handle));")
                self.writeline(f"RAIIAtenTensorHandle {carry}({carry}_handle);")
                self.writeline(f"std::vector<RAIIAtenTensorHandle> {carry}_rows;")
            inputs = [*carries, *(buf.codegen_reference() for buf in loop.additional_inputs)]

            def keep_rows() -> None:  # each carry as a (1, numel) view of the tensor it now holds
                for carry, (size, _) in zip(carries, shapes, strict=True):
                    numel = math.prod(size)
                    self.writeline("{")
                    self.writeline(f"int64_t row_size[] = {{1, {numel}}}; int64_t row_stride[] = {{{numel}, 1}};")
                    self.writeline("AtenTensorHandle row;")
                    self.writeline(f"AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch__reinterpret_tensor({carry}, 2, "
                                   "row_size, row_stride, 0, &row));")
                    self.writeline(f"{carry}_rows.emplace_back(row);")
                    self.writeline("}")

            self.writeline("while (1) {")
            self.writeline(enter(self, loop.cond_subgraph.graph))
            self.codegen_subgraph(loop.cond_subgraph, inputs, [cond])
            if bool_pred:
                self.writeline(f"if (!{cond}) break;")
            else:
                self.codegen_tensor_item(torch.bool, cond, f"{cond}_scalar")
                self.writeline(f"if (!{cond}_scalar) break;")
            self.writeline(leave(self))
            self.writeline(enter(self, loop.body_subgraph.graph))
            self.codegen_subgraph(loop.body_subgraph, inputs, carries)
            keep_rows()
            self.writeline(leave(self))
            self.writeline("}")
            self.writeline(f"if ({carries[0]}_rows.empty()) {{")  # no iteration: the initial carries, stacked
            keep_rows()
            self.writeline("}")
            for carry, (size, stride), out in zip(carries, shapes, loop.outputs, strict=True):
                result = out.get_name()
                self.writeline(f"AtenTensorHandle {result}_handle;")
                self.writeline("{")
                self.writeline("std::vector<AtenTensorHandle> rows;")
                self.writeline(f"for (auto& row : {carry}_rows) rows.push_back(row.get());")
                self.writeline("AtenTensorHandle flat;")
                self.writeline("AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu_cat(rows.data(), rows.size(), 0, &flat));")
                self.writeline("RAIIAtenTensorHandle flat_owner(flat);")
                self.writeline(f"int64_t size[] = {_array([0, *size])}; size[0] = {carry}_rows.size();")
                self.writeline(f"int64_t stride[] = {_array(stride)};")
                self.writeline(f"AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch__reinterpret_tensor(flat, {len(size) + 1}, "
                               f"size, stride, 0, &{result}_handle));")
                self.writeline("}")
                self.writeline(f"RAIIAtenTensorHandle {result}({result}_handle);")

    _WRAPPER_TYPE = StackOutputCppWrapper
    return _WRAPPER_TYPE


@contextlib.contextmanager
def stack_output_codegen() -> Iterator[None]:
    """Inside: inductor's C++ wrapper for the CPU generates ``while_loop_stack_output`` (see the module docstring);
    inductor's own wrapper class is restored on exit."""
    import dataclasses

    from torch._inductor.codegen import common

    common.init_backend_registration()
    before = common.device_codegens["cpu"]
    common.device_codegens["cpu"] = dataclasses.replace(before, cpp_wrapper_codegen=_wrapper_type())
    try:
        yield
    finally:
        common.device_codegens["cpu"] = before
