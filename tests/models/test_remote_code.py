"""`model.trust_remote_code`: a model whose code ships in its own folder trains, and every later step
that loads it (the sample reply, evaluation, export, chat) loads it with its code; evaluation and chat
only on the user's own --trust-remote-code, never because a run directory says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..training.runs import command, record, tiny_model_dir, train

pytestmark = pytest.mark.slow

MODELING = """
from transformers import LlamaConfig, LlamaForCausalLM


class TinyRemoteConfig(LlamaConfig):
    model_type = "tiny_remote"


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig
"""


def remote_code_model(folder: Path) -> Path:
    """The tiny model as a model type transformers does not know: its config and model classes are a
    Python file in its folder (`auto_map`), loadable only with trust_remote_code=True."""
    tiny_model_dir(folder)
    (folder / "modeling_tiny_remote.py").write_text(MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="tiny_remote",
        architectures=["TinyRemoteForCausalLM"],
        auto_map={
            "AutoConfig": "modeling_tiny_remote.TinyRemoteConfig",
            "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_with_its_own_code_trains_evaluates_exports_and_chats(tmp_path):
    from transformers import AutoModelForCausalLM

    base = remote_code_model(tmp_path / "remote")
    with pytest.raises(ValueError, match="trust_remote_code"):  # the model really needs its code
        AutoModelForCausalLM.from_pretrained(base)
    run = tmp_path / "run"
    train(
        run,
        f"model.name={base}",
        "model.random_init=false",
        "model.trust_remote_code=true",
        "train.max_steps=2",
        "train.sample_prompt=What is 2 + 3?",
        "eval=[loss,gsm8k]",
        "eval.tasks.gsm8k.path=generated:arithmetic",
        "eval.tasks.gsm8k.config_name=null",
        "eval.tasks.gsm8k.max_samples=2",
        "eval.tasks.gsm8k.max_new_tokens=4",
    )
    rec = record(run)
    assert rec["sample"] is not None and "gsm8k.strict_accuracy" in rec["metrics"]
    assert (
        AutoModelForCausalLM.from_pretrained(run / "merged", trust_remote_code=True).config.model_type == "tiny_remote"
    )
    for name, args in (
        ("hydratune-export", [str(run)]),
        ("hydratune-eval", [str(run), "--trust-remote-code", "--max-samples", "2", "--max-new-tokens", "4"]),
        ("hydratune-chat", [str(run), "--trust-remote-code", "--prompt", "Hi", "--max-new-tokens", "4"]),
        ("hydratune-chat", [str(run / "adapter"), "--trust-remote-code", "--prompt", "Hi", "--max-new-tokens", "4"]),
        ("hydratune-chat", [str(base), "--trust-remote-code", "--prompt", "Hi", "--max-new-tokens", "4"]),
    ):
        out = command(name, *args)
        assert out.returncode == 0, f"{name} {args}: {out.stderr[-3000:]}"


def test_a_run_directory_never_grants_trust_remote_code(tmp_path):
    """A run directory from elsewhere whose spec.json says model.trust_remote_code=true, its merged/ shipping
    code that leaves a mark when it runs: evaluation and chat refuse it (exit 2, naming the flag) and run
    nothing, until the user adds --trust-remote-code."""
    import dataclasses

    from hydratune.commands.cli import compose_spec
    from hydratune.config.spec_file import save_spec

    from ..conftest import cpu_env

    ran = tmp_path / "the-code-ran"
    run = tmp_path / "downloaded-run"
    remote_code_model(run / "merged")
    modeling = run / "merged" / "modeling_tiny_remote.py"
    modeling.write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n" + modeling.read_text())
    spec = compose_spec(["model=tiny_llama", f"hydra.run.dir={run}"], env=cpu_env())
    save_spec(dataclasses.replace(spec, model=dataclasses.replace(spec.model, trust_remote_code=True)), run)
    chat = ["--prompt", "Hi", "--max-new-tokens", "2"]
    for name, args in (
        ("hydratune-chat", [str(run), *chat]),
        ("hydratune-chat", [str(run / "merged"), *chat]),
        ("hydratune-eval", [str(run), "--max-samples", "1", "--max-new-tokens", "2"]),
    ):
        out = command(name, *args)
        assert out.returncode == 2 and "--trust-remote-code" in out.stderr, f"{name} {args}: {out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr and not ran.exists(), f"{name} {args} ran the run's code"
    out = command("hydratune-chat", str(run), "--trust-remote-code", *chat)
    assert out.returncode == 0 and ran.exists(), out.stderr[-3000:]
