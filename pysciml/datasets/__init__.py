"""Graph data sets for the neural-ODE examples: the Planetoid citation graphs (read from files the user has)
and a seeded stochastic-block-model graph with class-dependent Gaussian features (generated here).

Both return a :class:`GraphData` (node features, labels, edges, train/val/test masks as torch tensors).
"""

from __future__ import annotations

from .graph import GraphData, edge_homophily
from .planetoid import PLANETOID_NAMES, load_planetoid
from .sbm import sbm_graph

__all__ = ["GraphData", "PLANETOID_NAMES", "edge_homophily", "load_planetoid", "sbm_graph"]
