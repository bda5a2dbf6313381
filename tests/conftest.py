"""Fixtures shared by several test files."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster (5x when the 2 cores are busy), and results
    that are compared bitwise must not depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A few-KB corpus prepared with the byte tokenizer as data_dir/tiny (test_train.py)."""
    from test_train import write_corpus

    d = str(tmp_path_factory.mktemp("data"))
    write_corpus(d)
    return d
