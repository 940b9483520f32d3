"""A sample reply from a saved model, printed at the end of a run."""

from __future__ import annotations

from pathlib import Path

from hydratune.models.chat_templates import stop_token_ids
from hydratune.models.inference_placement import CPU_FP32, Placement


def sample_reply(
    model_dir: Path,
    prompt: str,
    max_new_tokens: int = 96,
    *,
    trust_remote_code: bool = False,
    placement: Placement = CPU_FP32,
) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code, **placement.load_kwargs()
    ).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    ).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_token_ids(tokenizer)
        )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
