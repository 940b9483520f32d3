"""The chunked loss over supervised positions is the model's own loss, value and gradients."""

from __future__ import annotations

import pytest
import torch

from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.training.lean_loss import lean_causal_lm_loss, unsupported_reason

from ..tiny_llama import tiny_llama


def _tiny_model(tie: bool):
    return tiny_llama(use_cache=False, tie_word_embeddings=tie)


def _packed_batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (2, 40))
    labels = ids.clone()
    labels[:, :12] = IGNORE_INDEX  # a masked prompt
    labels[0, 20:25] = IGNORE_INDEX  # and a second sequence's prompt inside the packed row
    labels[:, 0] = IGNORE_INDEX
    position_ids = torch.cat([torch.arange(20), torch.arange(20)]).repeat(2, 1)
    return {"input_ids": ids, "labels": labels, "position_ids": position_ids}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("chunk", [7, 1024])
def test_chunked_loss_and_gradients_equal_the_plain_ones(tie, chunk, monkeypatch):
    monkeypatch.setattr("hydratune.training.lean_loss.CHUNK_TOKENS", chunk)
    batch = _packed_batch()
    n_items = torch.tensor(100)  # the step's supervised tokens, across accumulation and ranks
    model = _tiny_model(tie)
    plain = model(**batch, num_items_in_batch=n_items).loss
    plain.backward()
    plain_grads = _grads(model)
    model.zero_grad()
    lean = lean_causal_lm_loss(model, batch, n_items)
    lean.backward()
    assert abs(lean.item() - plain.item()) < 1e-5
    lean_grads = _grads(model)
    assert lean_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(lean_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    assert model.get_output_embeddings().forward.__func__ is torch.nn.Linear.forward  # the head is restored


def test_chunked_loss_through_a_lora_model_equals_its_loss():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_model(True), LoraConfig(r=4, target_modules="all-linear"))
    batch = _packed_batch()
    plain = model(**batch).loss  # without num_items_in_batch: the mean over this batch's supervised tokens
    assert abs(lean_causal_lm_loss(model, batch, None).item() - plain.item()) < 1e-5
    assert unsupported_reason(model) is None


def test_a_model_that_rescales_its_logits_is_not_chunked():
    model = _tiny_model(True)
    model.config.final_logit_softcapping = 30.0
    assert "rescales its logits" in unsupported_reason(model)
