"""localrag: private, offline question answering over your own documents."""

from localrag import offline as _offline

# Before any submodule can import onnxruntime, fastembed or huggingface_hub: they read the
# telemetry and offline switches once, when imported.
_offline.apply()

__version__ = "0.1.0"
