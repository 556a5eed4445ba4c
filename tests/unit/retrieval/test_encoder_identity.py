"""A collection records the encoder that built it; another encoder is refused naming both, and the knn memory's
vectors are computed once per encoder and read back afterwards."""

import numpy as np
import pytest

from coe_router.retrieval.identity import EncoderMismatchError, check_encoder, identify
from coe_router.retrieval.memory_vectors import memory_vectors
from coe_router.retrieval.store import chroma_client, chroma_collection
from tests.fakes import BagOfWordsEncoder


class ShiftedEncoder(BagOfWordsEncoder):
    """Same size as BagOfWordsEncoder, other vectors (another model with the same dimension)."""

    def encode(self, texts):
        return np.roll(super().encode(texts), 7, axis=1)


def test_a_collection_records_its_encoder_and_refuses_another(tmp_path):
    collection = chroma_collection("examples", tmp_path)
    built_by = BagOfWordsEncoder(256)
    check_encoder(collection, built_by, "retriever.collection 'examples'", "use a new name")
    collection.add(ids=["1"], embeddings=built_by.encode(["what is 2 + 2"]).tolist(), documents=["what is 2 + 2"])
    reopened = chroma_collection("examples", tmp_path)
    assert reopened.metadata["coe:dim"] == 256 and reopened.metadata["coe:encoder"] == "BagOfWordsEncoder"
    check_encoder(reopened, BagOfWordsEncoder(256), "retriever.collection 'examples'", "use a new name")  # same: fine
    with pytest.raises(EncoderMismatchError, match=r"BagOfWordsEncoder \(256 dimensions\).*\(64 dimensions\); use a new"):
        check_encoder(reopened, BagOfWordsEncoder(64), "retriever.collection 'examples'", "use a new name")
    with pytest.raises(EncoderMismatchError, match="retriever.collection 'examples': its vectors were built by"):
        check_encoder(reopened, ShiftedEncoder(256), "retriever.collection 'examples'", "use a new name")


def test_a_collection_that_records_no_encoder_is_checked_on_a_stored_document(tmp_path):
    collection = chroma_collection("older", tmp_path)
    encoder = BagOfWordsEncoder(256)
    collection.add(ids=["1"], embeddings=encoder.encode(["integrate x squared"]).tolist(),
                   documents=["integrate x squared"])
    with pytest.raises(EncoderMismatchError, match="built by another encoder than the configured ShiftedEncoder"):
        check_encoder(collection, ShiftedEncoder(256), "retriever.collection 'older'", "rebuild it")
    check_encoder(collection, encoder, "retriever.collection 'older'", "rebuild it")  # the right one: recorded now
    assert chroma_collection("older", tmp_path).metadata["coe:dim"] == 256


def test_memory_vectors_are_computed_once_and_read_back(tmp_path):
    """From Chroma (what replicas share): no machine copy here, so every call reads the collection."""
    client = chroma_client(tmp_path / "chroma")
    texts = [f"question number {i} about topic {i % 7}" for i in range(2500)] + ["question number 3 about topic 3"]
    first = BagOfWordsEncoder(256)
    vectors = memory_vectors(client, "examples", first, texts, cache_dir=tmp_path / "copy-a")
    assert vectors.shape == (2501, 256) and np.allclose(vectors[3], vectors[-1])
    assert np.allclose(vectors, first.encode(texts))
    again = BagOfWordsEncoder(256)
    assert np.allclose(memory_vectors(client, "examples", again, texts, cache_dir=tmp_path / "copy-b"), vectors)
    assert again.calls == 1  # the identity probe, no question re-encoded
    changed = BagOfWordsEncoder(256)
    memory_vectors(client, "examples", changed, [*texts[:-1], "a brand new question"], cache_dir=tmp_path / "copy-c")
    assert changed.calls == 2  # the probe, then only the new question
    other = ShiftedEncoder(256)  # another encoder: its own collection, never the first one's vectors
    assert np.allclose(memory_vectors(client, "examples", other, texts[:10], cache_dir=tmp_path / "copy-d"),
                       other.encode(texts[:10]))


class _NoChroma:
    def get_or_create_collection(self, *args, **kwargs):
        raise AssertionError("the machine's copy should have answered")


def test_a_restart_on_the_same_machine_reads_its_copy_without_asking_chroma(tmp_path):
    client, copies = chroma_client(tmp_path / "chroma"), tmp_path / "copies"
    texts = [f"question number {i} about topic {i % 7}" for i in range(300)]
    vectors = memory_vectors(client, "examples", BagOfWordsEncoder(256), texts, cache_dir=copies)
    (copy,) = copies.glob("*.npy")
    assert np.array_equal(memory_vectors(_NoChroma(), "examples", BagOfWordsEncoder(256), texts, cache_dir=copies),
                          vectors)
    # another memory of the same collection (an edited outcomes file) replaces the copy; another encoder has its own
    edited = [*texts[:-1], "a brand new question"]
    memory_vectors(client, "examples", BagOfWordsEncoder(256), edited, cache_dir=copies)
    assert not copy.exists() and len(list(copies.glob("*.npy"))) == 1
    memory_vectors(client, "examples", ShiftedEncoder(256), edited, cache_dir=copies)
    assert len(list(copies.glob("*.npy"))) == 2
    # a torn copy is not trusted: Chroma answers, and the copy is written again
    for path in copies.glob("*.npy"):
        path.write_bytes(b"torn")
    assert np.allclose(memory_vectors(client, "examples", BagOfWordsEncoder(256), edited, cache_dir=copies),
                       BagOfWordsEncoder(256).encode(edited))
    assert any(np.load(path).shape == (300, 256) for path in copies.glob("*.npy"))
