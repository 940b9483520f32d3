"""Training: the method (full, LoRA, QLoRA; SFT, DPO, KTO, GRPO) on the HF Trainer under each
sharding strategy, the plan, checkpoints and resume, launching ranks, the training check."""
