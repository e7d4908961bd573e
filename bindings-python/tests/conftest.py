"""Shared pools: starting worker processes costs a Python start-up each, so
tests share one pool per backend where they do not change it."""

import pytest

import shoal

BACKENDS = ["process", "threads"]


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    p = shoal.Pool(2, backend=request.param)
    yield p
    p.terminate()


@pytest.fixture(scope="module")
def process_pool():
    p = shoal.Pool(2, backend="process")
    yield p
    p.terminate()
