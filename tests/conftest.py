import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
torch.set_num_threads(2)


@pytest.fixture
def official():
    from official import official_modeling

    return official_modeling()
