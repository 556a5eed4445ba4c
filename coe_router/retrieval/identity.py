"""Which encoder built a collection of vectors, so a swapped encoder is refused instead of routing in silence.

Vectors of two encoders are not comparable: a MiniLM collection searched with another model's query vectors
returned a biology label for a math question at confidence 0.81, and another vector size failed deep in numpy.
A collection records its encoder in its metadata (name, dimension, and a fingerprint: a probe sentence's vector
projected on 16 fixed random directions); one built before it recorded anything is checked by re-encoding one
stored document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coe_router.config import ConfigError

PROBE = "coe-router encoder probe: what is the derivative of x squared?"
PROBE_COMPONENTS = 16
# The projections of a unit vector on standard-normal directions are ~N(0, 1): a bfloat16 micro-batch moves them by
# about 0.005, another encoder by about 1.
PROBE_TOLERANCE = 0.05
SAMPLE_MIN_COSINE = 0.98


class EncoderMismatchError(ConfigError):
    """The vectors were built by another encoder than the one configured."""


@dataclass(frozen=True)
class EncoderIdentity:
    name: str
    dim: int
    probe: tuple[float, ...]

    def as_metadata(self) -> dict:
        return {"coe:encoder": self.name, "coe:dim": self.dim,
                "coe:probe": ",".join(f"{value:.4f}" for value in self.probe)}

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> "EncoderIdentity | None":
        metadata = metadata or {}
        if "coe:dim" not in metadata:
            return None
        probe = tuple(float(x) for x in str(metadata.get("coe:probe") or "").split(",") if x)
        return cls(str(metadata.get("coe:encoder", "?")), int(metadata["coe:dim"]), probe)

    def matches(self, other: "EncoderIdentity") -> bool:
        if self.dim != other.dim or len(self.probe) != len(other.probe):
            return False
        return bool(np.max(np.abs(np.array(self.probe) - np.array(other.probe)), initial=0.0) <= PROBE_TOLERANCE)

    def describe(self) -> str:
        return f"{self.name} ({self.dim} dimensions)"


def encoder_name(encoder) -> str:
    """A name that changes with the model: the encoder's `model_id` (a LangChain Embeddings' class and model), the
    MiniLM folder's name, else the class."""
    if getattr(encoder, "model_id", None):
        return encoder.model_id
    tokenizer = getattr(getattr(encoder, "model", None), "tokenizer", None)
    source = getattr(tokenizer, "name_or_path", None)
    if source:
        return f"{type(encoder).__name__}:{Path(source).parent.name}/{Path(source).name}"
    return type(encoder).__name__


def identify(encoder) -> EncoderIdentity:
    vector = _unit(encoder.encode([PROBE])[0])
    directions = np.random.default_rng(0).standard_normal((PROBE_COMPONENTS, vector.shape[0])).astype(np.float32)
    return EncoderIdentity(encoder_name(encoder), int(vector.shape[0]),
                           tuple(round(float(x), 4) for x in directions @ vector))


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / (np.linalg.norm(vector) or 1.0)


def check_encoder(collection, encoder, where: str, way_out: str,
                  mine: EncoderIdentity | None = None) -> EncoderIdentity:
    """Refuse `encoder` on a collection another encoder built (naming both and `way_out`); record the encoder on
    a collection that records none. `mine`: the encoder's identity when the caller has it. Returns it."""
    mine = mine or identify(encoder)
    recorded = EncoderIdentity.from_metadata(collection.metadata)
    if recorded is not None:
        if not recorded.matches(mine):
            raise EncoderMismatchError(f"{where}: its vectors were built by encoder {recorded.describe()}, but the "
                                       f"configured encoder is {mine.describe()}; {way_out}")
        return mine
    if collection.count():
        sample = collection.get(limit=1, include=["embeddings", "documents"])
        stored = sample["embeddings"][0]
        document = (sample.get("documents") or [None])[0]
        same = len(stored) == mine.dim and (
            document is None or float(_unit(encoder.encode([document])[0]) @ _unit(stored)) >= SAMPLE_MIN_COSINE)
        if not same:
            raise EncoderMismatchError(f"{where}: its vectors ({len(stored)} dimensions) were built by another encoder "
                                       f"than the configured {mine.describe()}; {way_out}")
    metadata = {key: value for key, value in (collection.metadata or {}).items() if not key.startswith("hnsw:")}
    collection.modify(metadata={**metadata, **mine.as_metadata()})  # the distance function stays (configuration)
    return mine
