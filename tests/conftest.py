"""Test-session settings shared by every test module."""

import os

# torch's OpenMP threads spin while waiting by default; on small shared CI machines (2 cores) that stalls
# tiny tensor ops several-fold. Passive waiting must be set before torch (libgomp) is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never reach the Hugging Face hub: models are built locally from configs.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use small tensors, dominated by per-op overhead: one intra-op thread is several times
    faster than two contended ones on a 2-core machine (benchmarks choose their own with --threads)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
