"""Models: the config's `models` section turned into LangChain chat models (factory), local GGUF models on
llama.cpp (llamacpp)."""
