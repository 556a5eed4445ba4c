"""Retrieval: labelled examples in Chroma (store), the MiniLM encoder as a LangChain `Embeddings` (encoder, its
direct forward pass in minilm, its query LRU in lru) and micro-batching of concurrent queries (batching)."""
