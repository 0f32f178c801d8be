import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"
# Tests never use the network: a missing weight file stays an error instead of a download
# (set here, not in a fixture, so that scripts the tests start inherit it too).
# tests/test_weight_download.py lifts it for its server on 127.0.0.1.
os.environ["SEG_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _small_cpu_footprint():
    # CI has two cores; one thread per test process keeps timings stable.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
