"""``GraphData``: one node-classification graph as torch tensors (what the loaders and generators return)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError

__all__ = ["GraphData", "edge_homophily", "undirected_edges"]

Tensor = torch.Tensor


@dataclass
class GraphData:
    """A graph with node features, labels and a train/val/test split.

    Attributes:
        x: ``(N, F)`` node features (float32 unless asked otherwise).
        y: ``(N,)`` int64 class labels; ``-1`` marks a node without a label (Citeseer's isolated test nodes).
        edge_index: ``(2, E)`` int64, both directions of every undirected edge, no self loops, no duplicates;
            row 0 is the source ``j``, row 1 the target ``i`` of the message ``j -> i`` (PyG's convention).
        train_mask, val_mask, test_mask: ``(N,)`` bool masks, pairwise disjoint.
        num_classes: number of classes ``C`` (labels are ``0..C-1``).
        name: where the graph came from ("cora", "sbm", ...).
    """

    x: Tensor
    y: Tensor
    edge_index: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int
    name: str = ""

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        """Directed edges (twice the undirected count)."""
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GraphData:
        """A copy with the features on ``device``/``dtype`` and the index tensors on ``device``."""
        return GraphData(
            x=self.x.to(device=device, dtype=dtype), y=self.y.to(device), edge_index=self.edge_index.to(device),
            train_mask=self.train_mask.to(device), val_mask=self.val_mask.to(device),
            test_mask=self.test_mask.to(device), num_classes=self.num_classes, name=self.name,
        )

    def __repr__(self) -> str:
        return (f"GraphData({self.name!r}: {self.num_nodes} nodes, {self.num_edges // 2} undirected edges, "
                f"{self.x.shape[1]} features, {self.num_classes} classes, train/val/test = "
                f"{int(self.train_mask.sum())}/{int(self.val_mask.sum())}/{int(self.test_mask.sum())})")


def undirected_edges(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """``(2, E)`` edge index with both directions of each pair, self loops and duplicates removed, sorted."""
    src, dst = src.long().reshape(-1), dst.long().reshape(-1)
    if src.numel() and (int(torch.minimum(src, dst).min()) < 0 or int(torch.maximum(src, dst).max()) >= num_nodes):
        raise InputError(f"edge endpoints must lie in [0, {num_nodes}); the adjacency names a node outside the graph")
    keep = src != dst
    src, dst = src[keep], dst[keep]
    both = torch.cat((torch.stack((src, dst)), torch.stack((dst, src))), dim=1)
    key = torch.unique(both[0] * num_nodes + both[1])  # sorted, unique
    return torch.stack((key // num_nodes, key % num_nodes))


def edge_homophily(edge_index: Tensor, y: Tensor) -> float:
    """Fraction of edges whose two ends have the same label (edges touching an unlabelled node are skipped)."""
    a, b = y[edge_index[0]], y[edge_index[1]]
    labelled = (a >= 0) & (b >= 0)
    if not bool(labelled.any()):
        raise InputError("edge_homophily needs at least one edge between labelled nodes")
    return float((a[labelled] == b[labelled]).double().mean())
