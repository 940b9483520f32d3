"""Training: the base model, the method (full, LoRA, QLoRA) and the sharding backend on HF Trainer."""
