"""How much batching can buy at most: the encoder's cost per text at batch sizes 1..32, same texts, same thread.

Micro-batching can only raise throughput by what one encoder call of b texts saves over b calls of one. This
measures that ceiling directly (rounds rotate the batch sizes; each round uses fresh test questions for every
size, so all sizes see texts of the same length distribution). The bfloat16 rows are an experiment, not a shipped
setting: torch autocast on the same fast forward pass (Sapphire Rapids has AMX bf16 units), vectors within 3e-5
cosine of the float32 ones.
"""

from __future__ import annotations

import numpy as np

from .common import Data, now


def batch_ceiling(data: Data, encoder, sizes=(1, 4, 8, 16, 32), bf16_sizes=(16, 32), rounds: int = 6,
                  per_round: int = 32, store=None, knn=None, k: int = 5, agreement_queries: int = 300) -> dict:
    import torch

    def fp32(texts):
        return encoder.encode_uncached(texts)

    def bf16(texts):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return encoder._encode_fast(texts) if encoder.fast_path else encoder._encode_st(texts)
        return encoder._on_encoder_thread(run)

    modes = {f"fp32_b{b}": (fp32, b) for b in sizes}
    modes.update({f"bf16_b{b}": (bf16, b) for b in bf16_sizes})
    pool = [data.questions[i].text for i in data.test[::-1]]  # from the end: texts no other row used
    per_round = min(per_round, len(pool))
    rounds = max(1, min(rounds, len(pool) // per_round))  # fresh texts every round, however small the test pool
    fp32(pool[:4]), bf16(pool[:4])
    per_text = {name: [] for name in modes}
    names = list(modes)
    offset = 0
    for r in range(rounds):
        texts = pool[offset : offset + per_round]
        offset += per_round
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            fn, b = modes[name]
            start = now()
            for s in range(0, len(texts), b):
                fn(texts[s : s + b])
            per_text[name].append((now() - start) / len(texts))
    base = np.asarray(per_text["fp32_b1"])
    sample = pool[:64]
    drift = float((fp32(sample) * bf16(sample)).sum(axis=1).min())
    agreement = None
    if store is not None and knn is not None:
        # Do bf16 batch vectors change routing? knn decisions on the same test queries, fp32 vs bf16 batches of 16.
        texts = [data.questions[i].text for i in data.test[:agreement_queries]]
        same = 0
        for s in range(0, len(texts), 16):
            part = texts[s : s + 16]
            for text, a, b in zip(part, fp32(part), bf16(part)):
                decided = [knn(text, None, store.search_vector(v, k)).task for v in (a, b)]
                same += decided[0] == decided[1]
        agreement = round(same / len(texts), 4)
    return {
        "bf16_same_knn_decision": agreement,
        "per_text_ms": {name: round(float(np.median(v)) * 1000, 2) for name, v in per_text.items()},
        "speedup_vs_b1": {name: round(float(np.median(base / np.asarray(v))), 2) for name, v in per_text.items()},
        "bf16_min_cosine_to_fp32": round(drift, 6),
        "settings": {"rounds": rounds, "texts_per_round": per_round},
    }
