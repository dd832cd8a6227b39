import pytest

from steer.testbed.tokenizer import build_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny models gain nothing from threads; one keeps the shared CI cores free. Module scope:
    the thread count is restored after each module, so tests elsewhere never see it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
