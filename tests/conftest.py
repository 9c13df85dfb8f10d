from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"


@pytest.fixture
def isbi_dir() -> Path:
    """The ISBI 2012 data beside the checkout; tests using it skip where it is absent."""
    if not (ISBI / "train" / "images").is_dir():
        pytest.skip("ISBI 2012 data not found at ../shared/data/isbi2012")
    return ISBI


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread: on a shared, loaded CPU two intra-op threads spin-waited ~13x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
