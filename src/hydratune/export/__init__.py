"""Export: merged/ that plain transformers and vLLM load, from an adapter, full weights or a
checkpoint (FSDP2's consolidated), its model card, and the push to the Hub."""
