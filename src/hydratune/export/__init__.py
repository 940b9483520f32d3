"""Export: merged checkpoints that plain transformers and vLLM load."""
