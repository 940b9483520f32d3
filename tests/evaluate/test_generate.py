"""Generation backends: vLLM's engines, through a stand-in `vllm` module (vllm needs a GPU)."""

from __future__ import annotations

import gc
import sys
import types
import weakref

import pytest

from ..data.tokenizers_for_tests import tiny_tokenizer


class _Engines:
    """A stand-in for vllm's LLM that records each engine's opening, its release (the object
    collected) and the cache emptied. Like vLLM's, an engine refers to itself through its parts,
    so only a garbage collection frees it."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.live: set[str] = set()

    def module(self) -> types.ModuleType:
        engines = self

        class LLM:
            def __init__(self, model: str, **kwargs) -> None:
                engines.events.append(("open", model, sorted(engines.live)))
                engines.live.add(model)
                self.llm_engine = types.SimpleNamespace(llm=self)  # the cycle
                weakref.finalize(self, engines.closed, model)

            def chat(self, messages, params, use_tqdm=True):
                return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="#### 2")]) for _ in messages]

        vllm = types.ModuleType("vllm")
        vllm.LLM = LLM
        vllm.SamplingParams = lambda **kwargs: kwargs
        return vllm

    def closed(self, model: str) -> None:
        self.live.discard(model)
        self.events.append(("closed", model))


def test_evaluating_two_models_with_vllm_never_holds_two_engines(tmp_path, monkeypatch):
    """The tuned model's engine is shut down and its memory returned before the base model's opens."""
    import torch

    from hydratune.evaluate.run_evaluation import EvalTarget, run_evaluation
    from hydratune.evaluate.tasks import TASKS

    engines = _Engines()
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroy_model_parallel = lambda: engines.events.append(("destroy_model_parallel",))
    distributed = types.ModuleType("vllm.distributed")
    distributed.parallel_state = parallel_state
    monkeypatch.setitem(sys.modules, "vllm", engines.module())
    monkeypatch.setitem(sys.modules, "vllm.distributed", distributed)
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", parallel_state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: engines.events.append(("empty_cache",)))

    targets = {}
    for label in ("tuned", "base"):
        tiny_tokenizer().save_pretrained(str(tmp_path / label))
        targets[label] = EvalTarget(
            label=label, load=lambda: pytest.fail("vLLM loads the directory"), directory=tmp_path / label
        )
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "2 + 3 ?", "answer": "#### 5"}\n')
    options = TASKS["gsm8k"].options(backend="vllm", path=str(tmp_path / "gsm8k.jsonl"))

    gc.disable()  # collections come only where the code asks for one, as an engine's cycles may outlive the call
    try:
        run_evaluation(
            targets["tuned"], targets["base"], {"gsm8k": options}, cache_root=tmp_path, out_dir=tmp_path / "eval"
        )
    finally:
        gc.enable()
    opens = [e for e in engines.events if e[0] == "open"]
    assert [e[1] for e in opens] == [str(tmp_path / "tuned"), str(tmp_path / "base")]
    assert all(held == [] for _, _, held in opens), engines.events  # no engine alive when the next opens
    between = engines.events[engines.events.index(opens[0]) + 1 : engines.events.index(opens[1])]
    assert ("closed", str(tmp_path / "tuned")) in between and between[-1] == ("empty_cache",)
    assert ("destroy_model_parallel",) in between
