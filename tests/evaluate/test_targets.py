"""What each evaluation target hands to a generation backend."""

from __future__ import annotations

import pytest


def test_vllm_gets_a_loadable_base_and_refuses_an_adapter(tmp_path):
    """vLLM loads a directory or a Hub id: the base target carries one; an adapter target has none,
    and a vllm evaluation of it is a configuration error with the fix, before any generation."""
    from hydratune.config.problems import ConfigError
    from hydratune.config.spec import ModelSpec
    from hydratune.evaluate.run_evaluation import _task_results
    from hydratune.evaluate.targets import adapter_target, base_target
    from hydratune.evaluate.tasks import TASKS

    assert (
        str(base_target(ModelSpec(name="Qwen/Qwen2.5-0.5B-Instruct"), tmp_path).directory)
        == "Qwen/Qwen2.5-0.5B-Instruct"
    )
    options = TASKS["gsm8k"].options(backend="vllm", path=str(tmp_path / "gsm8k.jsonl"))
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    with pytest.raises(ConfigError, match="backend=vllm.*merged"):
        _task_results(TASKS["gsm8k"], options, adapter_target(tmp_path), None, tmp_path, None)
