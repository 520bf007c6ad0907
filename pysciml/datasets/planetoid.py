"""Reader for the Planetoid citation graphs (Cora, Citeseer, Pubmed) in the files distributed by Yang, Cohen &
Salakhutdinov (2016, "Revisiting semi-supervised learning with graph embeddings") and Kipf & Welling (2017):

    ind.<name>.x, .tx, .allx   features (scipy sparse matrices): labelled training nodes, test nodes, all
                               training-side nodes (labelled and unlabelled)
    ind.<name>.y, .ty, .ally   one-hot labels (numpy arrays) of the same nodes
    ind.<name>.graph           dict {node: [neighbours]} (the whole graph)
    ind.<name>.test.index      one test-node index per line (not sorted)

The pickles were written by Python 2, hence ``encoding="latin1"``. Assembly follows the standard split
(Kipf & Welling's ``load_data``, PyG's ``read_planetoid_data``): nodes are ``allx`` followed by ``tx``, with the
test rows moved to the indices listed in ``test.index``; training nodes are the first ``len(y)`` (140 for
Cora), validation the next 500, test the 1000 listed ones. Citeseer's test index has gaps (isolated nodes
with no features in the files): the test block is widened to the full index range with zero features and
label ``-1``, and those nodes are in no mask. Nothing is downloaded: pass the directory holding the files.
Reading needs scipy (the feature matrices are pickled scipy sparse matrices).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .graph import GraphData, undirected_edges

__all__ = ["PLANETOID_NAMES", "load_planetoid"]

PLANETOID_NAMES = ("cora", "citeseer", "pubmed")
_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")


def load_planetoid(root: str | Path, name: str = "cora", *, dtype: torch.dtype = torch.float32,
                   normalize_features: bool = False, num_val: int = 500) -> GraphData:
    """Load a Planetoid graph from ``root/ind.<name>.*`` with the standard split.

    Args:
        root: directory holding the eight ``ind.<name>.*`` files (also accepted: a ``raw/`` folder inside it,
            as PyG stores them).
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"`` (case-insensitive); any other name is read the same
            way if its files exist.
        dtype: floating dtype of the features.
        normalize_features: divide each feature row by its L1 norm (its sum for the 0/1 word features of
            Cora and Citeseer, as GRAND and PyG's ``NormalizeFeatures`` do); rows of zeros stay zero.
        num_val: validation nodes, taken right after the training nodes (the standard split: 500).

    Returns:
        :class:`GraphData` on the CPU. Cora: 2708 nodes, 5278 undirected edges, 1433 features, 7 classes,
        140/500/1000 train/val/test nodes.

    Raises:
        InputError: a missing file (named, with the directory searched) or an inconsistent file.
        ImportError: scipy is not installed.
    """
    key = str(name).lower()
    folder = _find_folder(Path(root), key)
    try:
        import scipy.sparse as sp
    except ImportError as exc:  # pragma: no cover - scipy is a test dependency
        raise ImportError("load_planetoid needs scipy to read the pickled feature matrices: pip install scipy") from exc
    parts = {p: _unpickle(folder / f"ind.{key}.{p}") for p in _PARTS}
    test_index = _read_index(folder / f"ind.{key}.test.index")

    x, tx, allx = (sp.csr_matrix(parts[p]) for p in ("x", "tx", "allx"))
    y, ty, ally = (np.asarray(parts[p]) for p in ("y", "ty", "ally"))
    _check_rows(key, {"tx": (tx.shape[0], ty.shape[0]), "allx": (allx.shape[0], ally.shape[0]),
                      "x": (x.shape[0], y.shape[0])})
    if ty.shape[0] != len(test_index):
        raise InputError(f"ind.{key}.test.index lists {len(test_index)} nodes but ind.{key}.ty has "
                         f"{ty.shape[0]} rows; the files do not belong together")
    test_sorted = np.sort(test_index)
    lo, hi = int(test_sorted[0]), int(test_sorted[-1])
    if hi - lo + 1 > len(test_sorted):  # Citeseer: widen the test block over the gaps (isolated nodes)
        tx_full = sp.lil_matrix((hi - lo + 1, tx.shape[1]), dtype=tx.dtype)
        tx_full[test_sorted - lo, :] = tx
        ty_full = np.zeros((hi - lo + 1, ty.shape[1]), dtype=ty.dtype)
        ty_full[test_sorted - lo, :] = ty
        tx, ty = sp.csr_matrix(tx_full), ty_full

    features = sp.vstack((allx, tx)).tolil()
    labels = np.vstack((ally, ty))
    if lo != allx.shape[0] or features.shape[0] != hi + 1:
        raise InputError(f"ind.{key}.test.index spans nodes {lo}..{hi} but ind.{key}.allx has {allx.shape[0]} "
                         "rows; the test nodes must follow the allx nodes")
    features[test_index, :] = features[test_sorted, :]
    labels[test_index, :] = labels[test_sorted, :]

    n = features.shape[0]
    feats = torch.as_tensor(np.asarray(features.todense()), dtype=dtype)
    if normalize_features:
        feats = feats / feats.abs().sum(dim=1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)
    has_label = labels.sum(axis=1) > 0
    y_t = torch.as_tensor(np.where(has_label, labels.argmax(axis=1), -1), dtype=torch.long)
    edge_index = _edges_from_dict(parts["graph"], n, key)

    n_train = y.shape[0]
    if num_val < 0 or n_train + num_val > lo:
        raise InputError(f"{key}: {n_train} training + num_val={num_val} validation nodes overlap the test nodes "
                         f"from {lo}; lower num_val")
    train = torch.zeros(n, dtype=torch.bool)
    train[:n_train] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[n_train:n_train + num_val] = True
    test = torch.zeros(n, dtype=torch.bool)
    test[torch.as_tensor(test_sorted, dtype=torch.long)] = True
    return GraphData(x=feats, y=y_t, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test,
                     num_classes=int(labels.shape[1]), name=key)


def _find_folder(root: Path, key: str) -> Path:
    if not root.is_dir():
        raise InputError(f"data root {str(root)!r} is not a directory; pass the folder holding ind.{key}.x etc. "
                         "(the Planetoid files from github.com/kimiyoung/planetoid)")
    for folder in (root, root / "raw", root / key / "raw", root / key.capitalize() / "raw"):
        if (folder / f"ind.{key}.graph").exists():
            return folder
    return root  # the missing-file error below names the exact file


def _unpickle(path: Path) -> Any:
    if not path.exists():
        raise InputError(f"Planetoid file {path.name!r} is missing in {str(path.parent)!r}; the eight files "
                         f"ind.<name>.{{x,y,tx,ty,allx,ally,graph,test.index}} must all be there")
    with path.open("rb") as fh:
        try:
            return _LegacyUnpickler(fh, encoding="latin1").load()
        except Exception as exc:  # noqa: BLE001 - report which file is broken
            raise InputError(f"could not read Planetoid file {str(path)!r}: {type(exc).__name__}: {exc}") from exc


class _LegacyUnpickler(pickle.Unpickler):
    """The files pickle ``scipy.sparse.csr.csr_matrix`` (a module path SciPy deprecates and will remove):
    resolve every ``scipy.sparse.<submodule>.<name>`` through the public ``scipy.sparse`` namespace."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("scipy.sparse."):
            import scipy.sparse

            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _read_index(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(f"Planetoid file {path.name!r} is missing in {str(path.parent)!r}; it lists the test "
                         "nodes, one index per line")
    try:
        idx = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    except ValueError as exc:
        raise InputError(f"{str(path)!r} must hold one integer node index per line: {exc}") from exc
    if idx.size == 0:
        raise InputError(f"{str(path)!r} lists no test nodes")
    return idx


def _check_rows(key: str, pairs: dict[str, tuple[int, int]]) -> None:
    for part, (nx, ny) in pairs.items():
        if nx != ny:
            label = "y" if part == "x" else part.replace("x", "y")
            raise InputError(f"ind.{key}.{part} has {nx} rows but ind.{key}.{label} has {ny}; the files do not "
                             "belong together")


def _edges_from_dict(graph: Any, n: int, key: str) -> torch.Tensor:
    if not isinstance(graph, dict):
        raise InputError(f"ind.{key}.graph must hold a dict {{node: [neighbours]}}, got {type(graph).__name__}")
    src: list[int] = []
    dst: list[int] = []
    for node, nbrs in graph.items():
        for m in nbrs:
            src.append(int(node))
            dst.append(int(m))
    return undirected_edges(torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long), n)
