"""MiniLM's forward pass over its own weights, loaded straight from the model folder, and length-sorted chunking.

Why: on two CPU cores `SentenceTransformer.encode` spends about a third of one short query's time in per-call
dispatch, and importing sentence-transformers (with transformers) costs about 8 s of every start. `load_direct`
reads a plain BERT sentence-transformers folder (modules.json, config.json, the pooling config, model.safetensors,
tokenizer.json) with safetensors and tokenizers alone; `SentenceEncoder` uses it only after its output on `PROBES`
matched `SentenceTransformer.encode` (checked live once, then against the recorded reference vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PROBES = (
    "What is 17 * 23?",
    "A 45-year-old man presents with chest pain radiating to the left arm; which enzyme rises first?",
    "Which of the following best describes the holding of Marbury v. Madison, and why did it matter for the "
    "separation of powers between the judiciary and the other branches of the federal government?",
)


class BertForward:
    """MiniLM's forward pass written out with torch functional ops over the model's own weights.

    The maths is exactly BertModel's (absolute positions, token type 0, post-LayerNorm, exact GELU) plus mean
    pooling and L2 normalisation; query/key/value are one fused matrix product. Built only for a plain BertModel.
    """

    def __init__(self, weights: dict, heads: int, layers: int, eps: float, max_length: int):
        """`weights`: BertModel's state dict (names without a `bert.` prefix), as torch tensors."""
        import torch

        self.torch = torch
        self.max_length = max_length
        self.heads = heads
        self.eps = eps
        w = {name: tensor.detach() for name, tensor in weights.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(layers):
            p = f"encoder.layer.{i}."
            qkv_w = torch.cat([w[p + f"attention.self.{x}.weight"] for x in ("query", "key", "value")]).contiguous()
            qkv_b = torch.cat([w[p + f"attention.self.{x}.bias"] for x in ("query", "key", "value")]).contiguous()
            self.layers.append(tuple(
                [qkv_w, qkv_b] + [w[p + name] for name in (
                    "attention.output.dense.weight", "attention.output.dense.bias",
                    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                    "intermediate.dense.weight", "intermediate.dense.bias",
                    "output.dense.weight", "output.dense.bias",
                    "output.LayerNorm.weight", "output.LayerNorm.bias")]))

    @classmethod
    def from_module(cls, bert, max_length: int) -> "BertForward":
        """From a loaded transformers BertModel (sentence-transformers' first module)."""
        config = bert.config
        return cls(bert.state_dict(), config.num_attention_heads, config.num_hidden_layers, config.layer_norm_eps,
                   max_length)

    @staticmethod
    def supports(model) -> bool:
        """True for [Transformer(BertModel), mean Pooling, (Normalize)] with nothing that would change the maths."""
        try:
            modules = list(model)
            names = [type(m).__name__ for m in modules]
            if names not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
                return False
            bert = modules[0].auto_model
            config = bert.config
            pooling = modules[1].get_config_dict()
            return (
                type(bert).__name__ == "BertModel"
                and config.hidden_act == "gelu"
                and getattr(config, "position_embedding_type", "absolute") == "absolute"
                and pooling.get("pooling_mode") == "mean"
                and not any((model.prompts or {}).values())
                and model.default_prompt_name is None
                and not bert.training
            )
        except Exception:  # noqa: BLE001 - anything unexpected means: use sentence-transformers' own path
            return False

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        F = torch.nn.functional
        with torch.inference_mode():
            ids_t = torch.from_numpy(ids)
            keep = torch.from_numpy(mask)
            batch, length = ids.shape
            hidden = self.word.shape[1]
            head_dim = hidden // self.heads
            x = self.word[ids_t] + self.position[:length] + self.type0
            x = F.layer_norm(x, (hidden,), *self.ln, eps=self.eps)
            attend = None if bool(mask.all()) else keep[:, None, None, :]
            for qkv_w, qkv_b, o_w, o_b, ln1_w, ln1_b, i_w, i_b, d_w, d_b, ln2_w, ln2_b in self.layers:
                q, k, v = F.linear(x, qkv_w, qkv_b).view(batch, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
                a = a.transpose(1, 2).reshape(batch, length, hidden)
                x = F.layer_norm(F.linear(a, o_w, o_b) + x, (hidden,), ln1_w, ln1_b, eps=self.eps)
                h = F.gelu(F.linear(x, i_w, i_b))
                x = F.layer_norm(F.linear(h, d_w, d_b) + x, (hidden,), ln2_w, ln2_b, eps=self.eps)
            weights = keep.unsqueeze(-1).to(x.dtype)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return F.normalize(pooled.float(), dim=1).numpy()


def length_chunks(lengths: list[int], max_texts: int, max_tokens: int, waste: float = 1.25) -> list[range]:
    """Cut ascending `lengths` into chunks: a chunk ends before the padded size would pass `max_tokens`, at
    `max_texts` texts, or when the next text is more than `waste` times longer than the chunk's first (padding
    every text to a much longer one costs more than a separate forward pass)."""
    chunks, start = [], 0
    for end in range(1, len(lengths) + 1):
        if end == len(lengths):
            chunks.append(range(start, end))
            break
        nxt = lengths[end]
        if (end - start >= max_texts or (end - start + 1) * nxt > max_tokens
                or nxt > waste * lengths[start] + 4):
            chunks.append(range(start, end))
            start = end
    return chunks


ST_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
              "sentence_transformers.models.Normalize")


class DirectMiniLM:
    """A plain BERT sentence-transformers folder loaded without sentence-transformers: its tokenizer
    (tokenizers, from tokenizer.json), its weights (safetensors) and `BertForward`."""

    def __init__(self, forward: BertForward, tokenizer, dimension: int, pad_id: int):
        self.forward, self.tokenizer, self.dimension, self.pad_id = forward, tokenizer, dimension, pad_id

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]


def load_direct(folder: Path) -> DirectMiniLM | None:
    """The folder as a `DirectMiniLM`, or None when it is anything but [Transformer(BERT), mean Pooling,
    (Normalize)] with safetensors weights and a fast tokenizer (sentence-transformers then loads it)."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        types = tuple(m["type"] for m in modules)
        if types not in (ST_MODULES, ST_MODULES[:2]) or modules[0].get("path", "") not in ("", "."):
            return None
        config = json.loads((folder / "config.json").read_text())
        st_config = json.loads((folder / "sentence_bert_config.json").read_text())
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
        prompts = json.loads((folder / "config_sentence_transformers.json").read_text()) \
            if (folder / "config_sentence_transformers.json").exists() else {}
        mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
            value for key, value in pooling.items()
            if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens")
        plain = (config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
                 and config.get("position_embedding_type", "absolute") == "absolute"
                 and not any((prompts.get("prompts") or {}).values()) and not prompts.get("default_prompt_name"))
        weights_file, tokenizer_file = folder / "model.safetensors", folder / "tokenizer.json"
        if not (mean_only and plain and weights_file.exists() and tokenizer_file.exists()):
            return None
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    weights = {name.removeprefix("bert."): tensor for name, tensor in load_file(str(weights_file)).items()}
    max_length = int(st_config.get("max_seq_length") or config.get("max_position_embeddings", 512))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    forward = BertForward(weights, int(config["num_attention_heads"]), int(config["num_hidden_layers"]),
                          float(config.get("layer_norm_eps", 1e-12)), max_length)
    return DirectMiniLM(forward, tokenizer, int(config["hidden_size"]), int(config.get("pad_token_id") or 0))
