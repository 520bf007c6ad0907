"""pysciml._lstsq: least squares that repeat to the bit and give the minimum-norm solution of rank-deficient systems."""

from __future__ import annotations

import torch

from pysciml._lstsq import lstsq


def test_same_answer_whatever_the_alignment_and_minimum_norm():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(2, 12, 9, dtype=torch.float64, generator=gen)
    A[:, :, 4] = 2.0 * A[:, :, 1]  # rank 8 of 9 columns
    B = torch.randn(2, 12, 3, dtype=torch.float64, generator=gen)
    answers, ballast = set(), []
    for k in range(200):
        ballast.append(torch.empty(k % 13 + 1, dtype=torch.float64))  # shifts the clones' alignment
        answers.add(tuple(lstsq(A.clone(), B.clone()).flatten().tolist()))
    assert len(answers) == 1
    X = torch.tensor(answers.pop(), dtype=torch.float64).reshape(2, 9, 3)
    assert torch.allclose(X, torch.linalg.pinv(A) @ B, rtol=1e-10, atol=1e-12)  # the minimum-norm solution
