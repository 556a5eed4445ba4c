"""The collector pause around a build: no automatic collection inside, the caller's setting restored after."""

from __future__ import annotations

import gc

import pytest

from coe_router.startup import collection_paused


def test_the_collector_is_off_inside_and_back_on_after_even_when_the_build_fails():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collection_paused():
            assert not gc.isenabled()
            raise RuntimeError("the build failed")
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off():
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
