"""Pytest fixtures shared by all tests."""

import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (``-n auto``, the README's test command) each worker gets its share of the cores for
    torch's intra-op threads, so that two workers on a 2-core machine do not run four threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _default_dtype_unchanged():
    """A test (or a library it imports, e.g. DeepXDE) that changes torch's default dtype fails here, and the
    default is restored so that later tests do not depend on the order they run in."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    torch.set_default_dtype(before)
    assert after == before, f"the test changed torch's default dtype from {before} to {after}"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors, where threads only add contention (10x slower on a loaded
    2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
