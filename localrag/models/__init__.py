"""Model management, as in the `localrag models` commands: the registry of installed GGUF
language models (`registry`), reading GGUF headers (`gguf_info`), writing GGUF files from
Hugging Face weights (`gguf_convert`), and making embedder folders (`embedder_import`).

Nothing here runs a model: `localrag.llm` and `localrag.embedder` do.
"""
