"""DPO, KTO and GRPO through the `train` console script on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .runs import assert_merged_loads_and_generates, losses, record, train

pytestmark = pytest.mark.slow


def pair_rows(numbers) -> list[dict]:
    """A preference the tiny model can learn from a few pairs and carry to unseen ones: answer, don't refuse."""
    return [
        {
            "prompt": f"What is {i} plus 3?",
            "chosen": f"The answer is {i + 3}.",
            "rejected": "Sorry, I cannot help with that.",
        }
        for i in numbers
    ]


def preference_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, numbers in (("train", range(0, 64)), ("test", range(100, 108))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pair_rows(numbers)))
    return folder


def dpo(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "method=dpo",
        "dataset.format=preference",
        f"dataset.path={preference_data(tmp_path / 'pairs')}",
        "dataset.eval_split=test",
        "optim.learning_rate=5e-3",
        "optim.warmup_ratio=0",
        "train.micro_batch_size=4",
        *extra,
    ]


def preference_margin(policy, reference, run_dir: Path) -> float:
    """beta x mean over the held-out pairs of (chosen - rejected) policy-over-reference log-ratios:
    the reward margin TRL's evaluation reports, recomputed from two plain models."""
    import torch

    from hydratune.config.spec_file import load_spec
    from hydratune.data.prepare_data import run_preprocess

    spec = load_spec(run_dir)
    rows = run_preprocess(spec).load("eval")

    def logp(model, prompt, reply):
        ids = torch.tensor([prompt + reply])
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 : -1].float()
        return float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(reply)[:, None]).sum())

    margins = []
    for row in rows:
        chosen = logp(policy, row["prompt_ids"], row["chosen_ids"]) - logp(
            reference, row["prompt_ids"], row["chosen_ids"]
        )
        rejected = logp(policy, row["prompt_ids"], row["rejected_ids"]) - logp(
            reference, row["prompt_ids"], row["rejected_ids"]
        )
        margins.append(chosen - rejected)
    return spec.method.beta * sum(margins) / len(margins)


def test_dpo_raises_held_out_preference_and_exports_the_trained_policy(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec_file import load_spec
    from hydratune.models.model_loading import load_base_model

    run = tmp_path / "run"
    train(run, *dpo(tmp_path, "train.max_steps=10"))
    metrics = record(run)["metrics"]
    # at the start the policy is the reference: no margin, no pair preferred
    assert metrics["loss.eval_reward_margin_start"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["loss.eval_reward_accuracy"] >= 0.75 > metrics["loss.eval_reward_accuracy_start"]
    assert metrics["loss.eval_reward_margin"] > 0.05
    assert metrics["loss.eval_loss"] < metrics["loss.eval_loss_start"]
    assert_merged_loads_and_generates(run)
    # merged/ is the trained policy: against the base it gives the margin training measured
    spec = load_spec(run)
    base = load_base_model(spec.model, cache_root(spec.run.cache_dir), dtype=torch.float32, attn_implementation="sdpa")
    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    assert preference_margin(merged, base, run) == pytest.approx(metrics["loss.eval_reward_margin"], rel=1e-3)


def test_precomputed_reference_is_cached_with_the_data_and_reused(tmp_path):
    """Full weights, no reference copy: the reference log-probs are computed once, stored beside
    the data shards, and a second run on the same data and start model reads them."""
    common = dpo(
        tmp_path,
        "method.weights=full",
        "method.precompute_reference=true",
        "train.max_steps=3",
        "eval=[none]",
        "optim.learning_rate=1e-4",
    )
    train(tmp_path / "first", *common)
    data = Path(record(tmp_path / "first")["data"]["directory"])
    cached = sorted(data.glob("cache-*.arrow"))
    assert len(cached) == 1, list(data.iterdir())
    stamp = cached[0].stat().st_mtime_ns
    second = train(tmp_path / "second", *common, "method.beta=0.3")
    assert sorted(data.glob("cache-*.arrow")) == cached and cached[0].stat().st_mtime_ns == stamp
    assert "Computing reference log probs" not in second.stderr + second.stdout
    assert losses(tmp_path / "first")[0] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at step 1: log 2


@pytest.mark.distributed
def test_dpo_ddp_matches_single_process_with_same_global_batch(tmp_path):
    common = dpo(tmp_path, "train.data_order=sequential", "train.max_steps=4", "method.lora.dropout=0", "eval=[none]")
    train(tmp_path / "single", *common)
    train(tmp_path / "ddp", *common, "sharding=ddp", "train.micro_batch_size=2")
    single, ddp = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(single) == 4 and single[-1] < single[0]
    assert single == pytest.approx(ddp, rel=1e-4), (single, ddp)


def test_kto_on_pairs_split_into_desirable_and_undesirable_rows_with_qlora(tmp_path):
    run = tmp_path / "run"
    train(run, *dpo(tmp_path, "method=kto", "method.weights=qlora", "train.max_steps=8"))
    metrics = record(run)["metrics"]
    assert metrics["loss.eval_loss"] < metrics["loss.eval_loss_start"]
    assert (run / "merged" / "config.json").is_file()


def text_length(completions, **_):
    """A reward a random tiny model's completions differ on (its 12 random tokens spell texts of
    different lengths), so GRPO's advantages are not all zero."""
    return [len(c) / 100 for c in completions]


def odd_answers_only(completions, answer, **_):
    """Spread on about half the prompts: those whose reference answer is odd score their
    completions' lengths (which differ), the others score 0 on every completion."""
    from hydratune.rewards.answers import reference_answer

    return [len(c) / 100 if int(reference_answer(a)) % 2 else 0.0 for c, a in zip(completions, answer)]


GRPO = [
    "method=grpo",
    "method.num_generations=4",
    "method.max_completion_length=12",
    "train.micro_batch_size=4",
    "method.rewards=[gsm8k_correct,tests.training.test_post_training:text_length]",
    "eval=[none]",
    "dataset.max_rows=32",
    "optim.learning_rate=1e-2",
    "optim.warmup_ratio=0",
]


# GRPO's group filter, on a reward that gives spread on about half the prompts.
GRPO_FILTERED = [
    *(o for o in GRPO if not o.startswith("method.rewards=")),
    "method.rewards=[tests.training.test_post_training:odd_answers_only]",
    "method.group_filter=spread",
]


def assert_trained_on_spread(run_dir: Path) -> None:
    """Every step of a GRPO_FILTERED run trained on groups with spread only, and some step had to
    sample past groups without spread to find them."""
    steps = [e for e in record(run_dir)["log_history"] if "loss" in e]
    for step in steps:
        assert step["groups/no_spread_trained"] == 0.0, step
        # each round samples as many prompts as the batch has groups, and the batch was filled with spread
        assert step["groups/prompts_per_kept_group"] == step["groups/rounds"], step
        assert step["rewards/odd_answers_only/std"] > 0
    assert any(step["groups/rounds"] > 1 and step["groups/no_spread"] > 0 for step in steps), steps


@pytest.mark.distributed
@pytest.mark.parametrize("method", ["kto", "grpo"])
def test_runs_under_ddp(method, tmp_path):
    # grpo: full weights with a frozen reference copy (beta > 0); 2 processes x 4 completions = two groups of 4,
    # kept by the group filter (the rounds are decided alike on both ranks, and groups move between them)
    overrides = (
        [*GRPO_FILTERED, "method.weights=full", "optim.learning_rate=1e-4"]
        if method == "grpo"
        else dpo(tmp_path, "method=kto", "train.micro_batch_size=2", "eval=[none]")
    )
    train(tmp_path / "run", *overrides, "sharding=ddp", "train.max_steps=2")
    rec = record(tmp_path / "run")
    assert rec["world_size"] == 2 and len(losses(tmp_path / "run")) == 2
    if method == "grpo":  # the groups trained on did differ: there was a signal to learn from
        assert_trained_on_spread(tmp_path / "run")


def test_grpo_settings_reach_trls_trainer(tmp_path):
    """DAPO's clip-higher and truncation mask, GSPO's sequence ratio, batch-scaled rewards, and
    completions reused for 2 passes of 2 steps each: TRL's trainer ran with each, and sampled once
    in 4 steps (on-policy it samples every step), its two groups passed through the group filter."""
    import torch

    run = tmp_path / "run"
    settings = {
        "epsilon_high": 0.28,
        "importance_sampling_level": "sequence",
        "scale_rewards": "batch",
        "mask_truncated_completions": True,
        "num_iterations": 2,
        "steps_per_generation": 2,
    }
    overrides = (f"method.{k}={v}" for k, v in settings.items())
    train(run, *GRPO, "train.max_steps=4", "method.group_filter=spread", *overrides)
    used = torch.load(run / "adapter" / "training_args.bin", weights_only=False)  # what the trainer ran with
    assert type(used).__name__ == "GRPOConfig"
    assert {k: getattr(used, k) for k in settings} == settings
    assert record(run)["versions"]["trl"]  # TRL's defaults change between releases: a run names the one it ran
    steps = [e for e in record(run)["log_history"] if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert [e["step"] for e in steps if "num_tokens" in e] == [1]  # one sampling round fed all four steps
    assert [e["step"] for e in steps if "groups/rounds" in e] == [1]  # the group filter ran on that round


def test_grpo_refuses_prompts_whose_reference_no_reward_can_read(tmp_path):
    """Bare numbers are references the rewards read; a word is not, and would score every completion 0."""
    data = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"What is {i} plus 3?", "answer": str(i + 3)} for i in range(16)]
    rows[5]["answer"] = "eight"
    rows[9]["answer"] = "twelve"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chosen = [*GRPO, f"dataset.path={data}", "dataset.format=prompt", "dataset.eval_split=null", "train.max_steps=1"]
    out = train(tmp_path / "refused", *chosen, check=False)
    assert out.returncode == 2, out.stderr[-3000:]
    assert (
        f"{data}:6: the reference answer 'eight' holds no number that gsm8k_correct can read (2 of 16 prompts)"
        in out.stderr
    )
    assert "Traceback" not in out.stderr and not (tmp_path / "refused" / "adapter").exists()
    rows[5]["answer"], rows[9]["answer"] = "8", "12"  # the fix the message gives
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train(tmp_path / "fixed", *chosen)


def test_dpo_weight_0_trains_the_sft_term_alone_on_the_chosen_replies(tmp_path):
    """The control of the DPO split: with the preference term off (the weight TRL's trainer ran
    with), the rejected replies, which that term reads, cannot change what is trained."""
    import torch
    from safetensors.torch import load_file

    def trained(name, rejected):
        folder = preference_data(tmp_path / name / "pairs")
        for split in ("train", "test"):
            rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
            (folder / f"{split}.jsonl").write_text(
                "".join(json.dumps({**r, "rejected": rejected}) + "\n" for r in rows)
            )
        run = tmp_path / name / "run"
        overrides = [o for o in dpo(tmp_path / name) if not o.startswith("dataset.path=")]
        settings = ("method.dpo_weight=0", "method.sft_weight=1.0", "train.max_steps=3", "eval=[none]")
        train(run, *overrides, f"dataset.path={folder}", *settings)
        used = torch.load(run / "adapter" / "training_args.bin", weights_only=False)
        assert (used.loss_type, used.loss_weights) == (["sigmoid", "sft"], [0.0, 1.0])
        return load_file(run / "adapter" / "adapter_model.safetensors")

    a, b = trained("a", "Sorry, I cannot help with that."), trained("b", "No.")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dpo_weight_0_without_an_sft_term_is_refused_with_the_fix(tmp_path):
    from hydratune.commands.cli import compose_spec
    from hydratune.config.problems import ConfigError

    from ..conftest import cpu_env

    chosen = ["model=tiny_llama", *dpo(tmp_path), "method.dpo_weight=0"]
    with pytest.raises(ConfigError, match="nothing would be trained"):
        compose_spec(chosen, env=cpu_env())
    assert compose_spec([*chosen, "method.sft_weight=1.0"], env=cpu_env()).method.dpo_weight == 0
