"""GRPO's sampling shortcuts compute what plain `generate` on the adapted model computes."""

from __future__ import annotations

import types

import pytest
import torch

from hydratune.training.fast_sampling import (
    adapter_folded_in,
    can_fold_adapter,
    fast_sampling,
    generate_sharing_prompts,
)

from ..tiny_llama import tiny_llama

PAD = 0


def _adapted_model(use_dora: bool = False, targets="all-linear", lora_dropout: float = 0.0, **config):
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(pad_token_id=PAD, eos_token_id=1, **config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=use_dora, lora_dropout=lora_dropout)
    model = get_peft_model(base, lora)
    for name, param in model.named_parameters():
        if "lora_B" in name or "lora_embedding_A" in name:  # a trained adapter, not peft's zero start
            torch.nn.init.normal_(param, std=0.2)
    return model.eval()


def _grouped_prompts():
    """Three prompts of different lengths, left-padded; groups interleaved, one prompt alone."""
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = (ids != PAD).long()
    order = torch.tensor([0, 1, 0, 1, 0, 1, 2])
    return ids[order], mask[order]


def _greedy(generate, ids, mask):
    out = generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=PAD,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences, torch.stack(out.logits, dim=1)


@torch.no_grad()
def test_one_pass_per_prompt_gives_the_plain_generate_logits():
    model = _adapted_model()
    ids, mask = _grouped_prompts()
    passes = []
    handle = model.get_base_model().register_forward_pre_hook(
        lambda _m, _a, kw: passes.append(kw["input_ids"].shape), with_kwargs=True
    )
    plain_tokens, plain_logits = _greedy(model.generate, ids, mask)
    plain_passes, passes[:] = list(passes), []
    tokens, logits = _greedy(lambda **kw: generate_sharing_prompts(model.generate, model, **kw), ids, mask)
    handle.remove()

    assert torch.equal(tokens, plain_tokens)
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert plain_passes[0] == (7, 5)  # every row's prompt
    assert passes[0] == (3, 4)  # each distinct prompt once, all but its last token
    assert passes[1] == (7, 1)  # generate goes on from the last prompt token


@torch.no_grad()
def test_the_folded_adapter_computes_the_adapter_and_leaves_the_weights_as_they_were():
    model = _adapted_model()
    ids, mask = _grouped_prompts()
    weights = {name: p.clone() for name, p in model.named_parameters()}
    adapted = model(input_ids=ids, attention_mask=mask).logits
    with model.disable_adapter():
        base = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapter changes the output

    with adapter_folded_in(model):
        folded = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(folded, adapted, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())

    with pytest.raises(KeyboardInterrupt), adapter_folded_in(model):
        raise KeyboardInterrupt  # a stop mid-sampling
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, adapted, atol=0, rtol=0)


@torch.no_grad()
def test_fast_sampling_samples_as_plain_generate_and_then_steps_aside():
    model = _adapted_model()
    ids, mask = _grouped_prompts()
    plain_tokens, plain_logits = _greedy(model.generate, ids, mask)
    with fast_sampling(model, fold_adapter=True):
        tokens, logits = _greedy(model.generate, ids, mask)
        sampled = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=True, pad_token_id=PAD)
    assert torch.equal(tokens, plain_tokens)
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert sampled.shape == (7, 9) and torch.equal(sampled[:, :5], ids)
    assert "generate" not in vars(model)

    wrapper = model.generate  # as FSDP2 sets one on the instance
    model.generate = wrapper
    with fast_sampling(model, fold_adapter=False):
        assert model.generate is not wrapper
    assert vars(model)["generate"] is wrapper


def test_dora_and_quantized_weights_are_not_folded():
    assert can_fold_adapter(_adapted_model())
    assert not can_fold_adapter(_adapted_model(use_dora=True))
    model = _adapted_model()
    with torch.no_grad():
        layer = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
        layer.weight = torch.nn.Parameter(layer.weight.to(torch.int8), requires_grad=False)
    assert not can_fold_adapter(model)


@pytest.mark.parametrize(
    "targets",
    [["lm_head", "embed_tokens", "q_proj"], ["lm_head", "q_proj"]],
    ids=["lm_head-and-embed_tokens", "lm_head-only"],
)
@torch.no_grad()
def test_tied_embeddings_sample_as_unfolded_and_keep_their_weights(targets):
    """One weight read by the embedding and the output layer cannot hold both layers' deltas:
    such a model samples unfolded, with the logits of the adapted model, round after round."""
    model = _adapted_model(targets=targets, tie_word_embeddings=True)
    base = model.get_base_model()
    assert base.lm_head.base_layer.weight is base.model.embed_tokens.weight  # tied, as in SmolLM2
    ids, mask = _grouped_prompts()
    weights = {name: p.clone() for name, p in model.named_parameters()}
    plain_tokens, plain_logits = _greedy(model.generate, ids, mask)
    for _round in range(2):
        with fast_sampling(model, fold_adapter=can_fold_adapter(model)):
            tokens, logits = _greedy(model.generate, ids, mask)
        assert torch.equal(tokens, plain_tokens)
        torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-5)
        assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    with pytest.raises(ValueError, match="shared"), adapter_folded_in(model):
        pass
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())


class _TRLGeneration:
    """What TRL 1.16's transformers path does in `_generate_single_turn`: `generate` on the
    unwrapped model as the trainer left it (`Trainer.training_step` calls `model.train()` first)."""

    def _generate_single_turn(self, prompt_ids, images, *args, **kwargs):
        ids, mask = prompt_ids
        with torch.no_grad():
            return _greedy(self.model_wrapped.generate, ids, mask)


@pytest.mark.parametrize("shortcuts", [True, False], ids=["folded", "trl"])
def test_sampling_runs_without_dropout_folded_or_not(shortcuts):
    """LoRA dropout 0.5 during training: both sampling paths sample from the model in eval mode
    (deterministic logits, those of the model without dropout), and training mode comes back."""
    from hydratune.training.post_training import FastSampling

    model = _adapted_model(lora_dropout=0.5)
    ids, mask = _grouped_prompts()
    with torch.no_grad():
        _, eval_logits = _greedy(model.generate, ids, mask)
    trainer = type("Trainer", (FastSampling, _TRLGeneration), {})()
    trainer.model_wrapped, trainer.accelerator = model, types.SimpleNamespace(unwrap_model=lambda m: m)
    trainer.use_vllm, trainer._is_vlm, trainer.sampling_shortcuts = False, False, shortcuts
    assert can_fold_adapter(model)
    model.train()
    model.get_base_model().lm_head.eval()  # a module a caller keeps in eval mode stays so
    modes = {name: m.training for name, m in model.named_modules()}
    for _round in range(2):
        tokens, logits = trainer._generate_single_turn((ids, mask), None)
        torch.testing.assert_close(logits, eval_logits, atol=1e-5, rtol=1e-5)
        assert {name: m.training for name, m in model.named_modules()} == modes
