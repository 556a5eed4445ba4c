"""MiniLM loaded straight from its package folder (safetensors + tokenizers), as a fresh `coe serve` start loads it:
the same vectors as sentence-transformers, and no sentence-transformers import once its reference is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from coe_router.retrieval.encoder import SentenceEncoder, embedding_model_path

pytestmark = pytest.mark.integration

TEXTS = ["What is 17 * 23?", "Ünïcödé text,\twith tabs   and spaces", "A long question about contracts. " * 60, ""]

LOAD = """
import json, sys, time
from coe_router.retrieval.encoder import load_encoder
encoder = load_encoder()
print(json.dumps({"direct": encoder._direct is not None, "fast": encoder.fast_path,
                  "sentence_transformers": "sentence_transformers" in sys.modules,
                  "vector": encoder.encode(["What is 17 * 23?"])[0].tolist()}))
"""


def _load(cache) -> dict:
    env = {**os.environ, "COE_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=300,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_direct_path_matches_sentence_transformers_on_hard_texts(tmp_path, monkeypatch):
    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    encoder = SentenceEncoder(embedding_model_path(), cache_size=0)
    assert encoder._direct is not None and encoder.fast_path and encoder.dimension == 384
    ours = encoder.encode(TEXTS)
    theirs = encoder.encode_with_sentence_transformers(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - theirs).max() < 1e-5  # the 60-sentence text is truncated at 256 tokens by both


def test_a_second_start_reads_the_reference_and_never_imports_sentence_transformers(tmp_path):
    first = _load(tmp_path)
    assert first["direct"] and first["fast"] and first["sentence_transformers"]  # recorded the reference once
    assert list((tmp_path / "encoder-reference").glob("*.npy"))
    second = _load(tmp_path)
    assert second["direct"] and second["fast"] and not second["sentence_transformers"]
    assert np.allclose(first["vector"], second["vector"], atol=1e-6)


def test_a_reference_that_disagrees_switches_the_direct_path_off(tmp_path, monkeypatch):
    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    SentenceEncoder(embedding_model_path())
    (reference,) = (tmp_path / "encoder-reference").glob("*.npy")
    np.save(reference, np.load(reference) * -1.0)  # as if sentence-transformers now computed other vectors
    encoder = SentenceEncoder(embedding_model_path())
    assert not encoder.fast_path
    assert np.allclose(encoder.encode(["What is 17 * 23?"]),
                       encoder.encode_with_sentence_transformers(["What is 17 * 23?"]), atol=1e-6)
