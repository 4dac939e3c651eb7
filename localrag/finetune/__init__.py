"""Fine-tuning on the user's own documents: a RAFT-style dataset, LoRA training, merging.

dataset.py builds training examples from the index; train.py trains a LoRA adapter (unsloth
on a supported GPU, transformers + peft elsewhere) and merges it into the base model, which
scripts/convert_gguf.py then turns into a GGUF served like any other model.
"""
