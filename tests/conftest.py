import pathlib
import socket
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
torch.set_num_threads(2)


@pytest.fixture
def official():
    from official import official_modeling

    return official_modeling()


@pytest.fixture(scope="session")
def twins():
    """twins(cfg, seed=0, attn=None) → (official Sam, basam Sam) with the same random weights
    (official.twins; needs segment-anything)."""
    from official import twins

    return twins


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """free_port() → a TCP port free on 127.0.0.1 at the time of the call (torchrun's rendezvous,
    the page's server); a new one per call."""
    return _free_port


def pytest_collection_modifyitems(items):
    """Comparisons with the official code carry 'official' in their names: they get its marker."""
    for item in items:
        if "official" in getattr(item, "originalname", item.name):
            item.add_marker(pytest.mark.official)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core machine OpenMP's spinning
    threads make each step 10-40x slower; restore the session's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
