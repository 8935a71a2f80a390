import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two intra-op threads on a busy 2-core machine collapse throughput; the app uses one as well."""
    import torch

    torch.set_num_threads(1)
    yield
