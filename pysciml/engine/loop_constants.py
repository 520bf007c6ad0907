"""An inductor graph pass that lifts tensor constants out of ``torch.while_loop`` bodies (for the C++ wrapper).

A ``f`` or ``jac`` that builds a tensor from literals (``torch.tensor(...)``, as HIRES's analytic ``jac`` does)
leaves, after AOTAutograd, a ``get_attr`` of a tensor constant inside the ``while_loop``'s body (or condition)
graph. In torch 2.13, inductor's C++ wrapper declares the constants of the outer graph only, so the generated
code names an undeclared ``while_loop_body_graph_0__tensor_constant0`` and the C++ build fails.
:func:`lift_loop_constants`'s pass moves each such constant to the outer graph (a buffer of the outer module) and
hands it to the loop as one more ``additional_inputs`` operand: a new trailing placeholder in both the body and the
condition graph (``while_loop`` passes the carried values, then the additional ones, to both), which replaces the
``get_attr``. The arithmetic is unchanged; the constant is read, not copied, on each iteration.

:func:`~.compiled_parts._backend` runs it as inductor's ``post_grad_custom_pre_pass``, which inductor applies to
the subgraphs first and then to the outer graph, where the loop node is rewritten. A ``torch.cond`` node gets the
same rewrite (its branches' constants become operands), so a constant in a branch inside a loop's body reaches
the body graph, and from there the outer graph (the compiled FBDF loop's Jacobian ``cond``). Loops nested inside
a loop's body are not rewritten.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["lift_loop_constants"]


def _tensor_constants(sub: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in sub.graph.nodes if n.op == "get_attr" and isinstance(getattr(sub, n.target), torch.Tensor)]


def _lift(graph: torch.fx.Graph, loop: torch.fx.Node) -> None:
    """Rewrite one ``while_loop`` node of ``graph`` (its cond/body graphs are attributes of the owning module), or
    one ``cond`` node (its two branch graphs take its operands: the constants become more operands)."""
    gm = graph.owning_module
    if loop.target is torch.ops.higher_order.cond:
        pred, true_attr, false_attr, operands = loop.args[:4]
        subs = [getattr(gm, a.target) for a in (true_attr, false_attr)]
        outer = _lift_from(graph, loop, subs)
        if outer:
            loop.args = (pred, true_attr, false_attr, (*operands, *outer), *loop.args[4:])
        return
    cond_attr, body_attr, carried, additional = loop.args[:4]
    outer = _lift_from(graph, loop, [getattr(gm, a.target) for a in (cond_attr, body_attr)])
    if outer:
        loop.args = (cond_attr, body_attr, carried, (*additional, *outer), *loop.args[4:])


def _lift_from(graph: torch.fx.Graph, loop: torch.fx.Node, subs: list[torch.fx.GraphModule]) -> list[torch.fx.Node]:
    """Move the tensor constants of ``subs`` (graphs that take the same operands) to ``graph`` before ``loop``,
    each as a new trailing placeholder of every graph in ``subs``; returns the new nodes of ``graph``."""
    gm = graph.owning_module
    found = [(sub, node) for sub in subs for node in _tensor_constants(sub)]
    if not found:
        return []
    outer = []
    for sub, node in found:
        name = f"_loop_constant_{len(outer)}_{node.target}"
        while hasattr(gm, name):
            name += "_"
        gm.register_buffer(name, getattr(sub, node.target))
        with graph.inserting_before(loop):
            lifted = graph.get_attr(name)
        lifted.meta.update(node.meta)
        outer.append(lifted)
    for sub in subs:  # both graphs take the same operands: one placeholder per lifted constant, in order
        last = [n for n in sub.graph.nodes if n.op == "placeholder"][-1]
        placeholders = []
        for lifted in outer:
            with sub.graph.inserting_after(last):
                last = sub.graph.placeholder(f"lifted{lifted.target}")
            last.meta.update(lifted.meta)
            placeholders.append(last)
        for (owner, node), placeholder in zip(found, placeholders, strict=True):
            if owner is sub:
                node.replace_all_uses_with(placeholder)
                sub.graph.erase_node(node)
        sub.recompile()
    return outer


_PASS_TYPE: Any = None


def lift_loop_constants() -> Any:
    """A new instance of the pass (see the module docstring), an inductor ``CustomGraphPass`` whose ``uuid`` is this
    file's hash, for inductor's FX graph cache. The class is built on the first call, so that ``import pysciml``
    does not import inductor (about 5 s on this machine); a compile imports it anyway."""
    global _PASS_TYPE
    if _PASS_TYPE is None:
        from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

        class LiftLoopConstants(CustomGraphPass):
            def __call__(self, graph: torch.fx.Graph) -> None:
                ops = (torch.ops.higher_order.while_loop, torch.ops.higher_order.cond)
                loops = [n for n in graph.nodes if n.op == "call_function" and n.target in ops]
                for loop in loops:
                    _lift(graph, loop)
                if loops:
                    graph.owning_module.recompile()

            def uuid(self) -> bytes:
                return get_hash_for_files((__file__,))

        _PASS_TYPE = LiftLoopConstants
    return _PASS_TYPE()
