import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _small_cpu_footprint():
    # CI has two cores; one thread per test process keeps timings stable.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
