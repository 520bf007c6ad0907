"""A seeded stochastic-block-model graph with class-dependent Gaussian node features (a stand-in for Cora that
is generated in milliseconds, so the graph examples and tests need no downloaded data).

Nodes are split evenly over ``C`` classes. Each unordered pair of nodes is joined independently with probability
``p_in`` (same class) or ``p_out`` (different classes), chosen so that the expected average degree and the
expected edge homophily (fraction of edges inside a class) are the requested ones. Features are
``x = mu_c + noise`` with class means ``mu_c ~ N(0, signal^2 I)`` and unit Gaussian noise: with a weak
``signal`` a per-node classifier is poor and averaging over neighbours (graph diffusion) helps, as on Cora.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .graph import GraphData, undirected_edges

__all__ = ["sbm_graph"]


def sbm_graph(num_nodes: int = 1000, num_classes: int = 7, *, avg_degree: float = 4.0, homophily: float = 0.8,
              num_features: int = 32, signal: float = 0.5, train_per_class: int = 20, num_val: int = 200,
              num_test: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32) -> GraphData:
    """Generate a stochastic-block-model node-classification graph.

    Args:
        num_nodes: ``N`` (at least 2 per class).
        num_classes: ``C``.
        avg_degree: expected mean degree (Cora: 3.9).
        homophily: expected fraction of edges joining two nodes of the same class, in ``(0, 1)`` (Cora: 0.81).
        num_features: feature dimension.
        signal: standard deviation of the class means relative to the unit feature noise.
        train_per_class: labelled training nodes per class (Cora's split: 20).
        num_val: validation nodes.
        num_test: test nodes (default: all remaining nodes).
        seed: seeds a private ``torch.Generator``: the same arguments give the same graph, and the global RNG
            is left alone.
        dtype: floating dtype of the features.

    Returns:
        :class:`GraphData` named ``"sbm"`` on the CPU.
    """
    n, c = int(num_nodes), int(num_classes)
    if c < 2 or n < 2 * c:
        raise InputError(f"sbm_graph needs num_classes >= 2 and num_nodes >= 2 * num_classes, got {n=} and {c=}")
    if not 0.0 < homophily < 1.0:
        raise InputError(f"homophily must lie in (0, 1), got {homophily}")
    if avg_degree <= 0:
        raise InputError(f"avg_degree must be positive, got {avg_degree}")
    n_labelled = train_per_class * c + num_val
    if train_per_class < 1 or num_val < 0 or n_labelled >= n:
        raise InputError(f"train_per_class * num_classes + num_val = {n_labelled} must be below num_nodes = {n}")
    if num_test is None:
        num_test = n - n_labelled
    if num_test < 1 or n_labelled + num_test > n:
        raise InputError(f"num_test must lie in [1, {n - n_labelled}] for this split, got {num_test}")

    gen = torch.Generator().manual_seed(int(seed))
    y = torch.arange(n) % c
    y = y[torch.randperm(n, generator=gen)]
    # expected pairs inside / across classes, then p_in, p_out from the wanted degree and homophily
    sizes = torch.bincount(y, minlength=c).double()
    pairs_in = float((sizes * (sizes - 1) / 2).sum())
    pairs_out = n * (n - 1) / 2 - pairs_in
    edges = avg_degree * n / 2
    p_in, p_out = homophily * edges / pairs_in, (1 - homophily) * edges / pairs_out
    if p_in > 1.0:
        raise InputError(f"avg_degree={avg_degree} with homophily={homophily} needs p_in = {p_in:.3g} > 1; "
                         "lower avg_degree or homophily, or use more nodes")
    iu = torch.triu_indices(n, n, offset=1)
    same = y[iu[0]] == y[iu[1]]
    prob = torch.where(same, torch.tensor(p_in, dtype=torch.float64), torch.tensor(p_out, dtype=torch.float64))
    keep = torch.rand(prob.shape, generator=gen, dtype=torch.float64) < prob
    edge_index = undirected_edges(iu[0][keep], iu[1][keep], n)

    means = signal * torch.randn(c, num_features, generator=gen, dtype=torch.float64)
    x = (means[y] + torch.randn(n, num_features, generator=gen, dtype=torch.float64)).to(dtype)

    train = torch.zeros(n, dtype=torch.bool)
    for k in range(c):
        members = torch.nonzero(y == k).flatten()
        train[members[torch.randperm(members.numel(), generator=gen)[:train_per_class]]] = True
    rest = torch.nonzero(~train).flatten()
    rest = rest[torch.randperm(rest.numel(), generator=gen)]
    val = torch.zeros(n, dtype=torch.bool)
    val[rest[:num_val]] = True
    test = torch.zeros(n, dtype=torch.bool)
    test[rest[num_val:num_val + num_test]] = True
    return GraphData(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test,
                     num_classes=c, name="sbm")
