"""MiniLM's forward pass over its own weights, and length-sorted chunking of a batch.

Why: on two CPU cores `SentenceTransformer.encode` spends about a third of one short query's time in per-call
dispatch. `SentenceEncoder` uses this path only for a plain BertModel with mean pooling, and only after checking
it against `SentenceTransformer.encode` on `PROBES` when the model loads.
"""

from __future__ import annotations

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

    def __init__(self, bert, max_length: int):
        import torch

        config = bert.config
        self.torch = torch
        self.max_length = max_length
        self.heads = config.num_attention_heads
        self.eps = config.layer_norm_eps
        emb = bert.embeddings
        self.word = emb.word_embeddings.weight.detach()
        self.position = emb.position_embeddings.weight.detach()
        self.type0 = emb.token_type_embeddings.weight.detach()[0]
        self.ln = (emb.LayerNorm.weight.detach(), emb.LayerNorm.bias.detach())
        self.layers = []
        for layer in bert.encoder.layer:
            attn = layer.attention.self
            qkv_w = torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]).detach().contiguous()
            qkv_b = torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]).detach().contiguous()
            out = layer.attention.output
            self.layers.append((
                qkv_w, qkv_b,
                out.dense.weight.detach(), out.dense.bias.detach(),
                out.LayerNorm.weight.detach(), out.LayerNorm.bias.detach(),
                layer.intermediate.dense.weight.detach(), layer.intermediate.dense.bias.detach(),
                layer.output.dense.weight.detach(), layer.output.dense.bias.detach(),
                layer.output.LayerNorm.weight.detach(), layer.output.LayerNorm.bias.detach(),
            ))

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
