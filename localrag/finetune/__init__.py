"""Fine-tuning on the user's own documents: a RAFT-style dataset, LoRA training, merging, export.

dataset.py builds training examples from the index (or from the user's own JSONL);
sft_data.py turns chat examples into token ids and labels with the base model's chat template;
backends.py picks the back end (unsloth on a supported GPU, transformers + peft elsewhere) and
loads the base model with LoRA layers; train.py runs the training loop and writes the adapter;
merge.py merges the adapter into the 16-bit base as a plain Hugging Face folder; export.py
converts that folder to GGUF (localrag.models.gguf_convert), quantizes it and registers it in the
models manifest, so it is served like any other model. `localrag finetune train` runs train,
merge and export in turn.
"""
