"""The model card (README.md) written into merged/ or adapter/ before publishing.

Everything on it comes from the run's own records (run.json, the data cache's report,
eval/metrics.json), so the card says what was run: the base model and revision, the
data sources with their row and token counts and the cache key, the method and its
hyperparameters, the evaluation table with 95% intervals and the paired test, the
hydratune version and the command that made the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from hydratune.eval_table import render_table
from hydratune.run_layout import RunDirectory

# The offline default is the GGUF build of this Hub model; the card links the original.
EMBEDDED_HUB_NAMES = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def hub_base_model(model: dict[str, Any]) -> Optional[str]:
    """The Hub name of the base model, when it is one (not a local directory or a random-weight test model)."""
    if model.get("random_init"):
        return None
    name = model["name"]
    name = EMBEDDED_HUB_NAMES.get(name, name)
    return name if "/" in name and not name.startswith(("/", ".", "~")) and not Path(name).exists() else None


def _data_report(run_dir: Path, record: dict[str, Any]) -> Optional[dict]:
    """The run's copy of the data report; a run made before it kept one reads the data cache's."""
    for path in (RunDirectory(run_dir).data_report, Path(record.get("data", {}).get("directory", "")) / "report.json"):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def root_model(record: dict[str, Any]) -> dict[str, Any]:
    """The model the chain of runs started from: a run trained from another run (`parent`) names its
    merged/, a path that means nothing on the Hub; the first run of the chain names the base."""
    parent = record.get("parent")
    if not parent:
        return record["spec"]["model"]
    while parent.get("parent"):
        parent = parent["parent"]
    return {
        "name": parent["model"],
        "random_init": parent.get("random_init", False),
        "revision": parent.get("revision"),
    }


def _front_matter(record: dict[str, Any], adapter: bool) -> str:
    spec = record["spec"]
    base = hub_base_model(root_model(record))
    sources = [spec["dataset"]["path"], *(m.get("path") for m in spec["dataset"].get("mix") or [])]
    hub_datasets = [
        s for s in sources if s and "/" in s and not s.startswith(("/", ".", "generated:")) and not Path(s).exists()
    ]
    lines = ["---", f"library_name: {'peft' if adapter else 'transformers'}"]
    if base:
        lines.append(f"base_model: {base}")
    lines.append("tags: [" + ", ".join(["hydratune", spec["method"]["name"], spec["method"]["weights"]]) + "]")
    if hub_datasets:
        lines.append("datasets: [" + ", ".join(hub_datasets) + "]")
    return "\n".join(lines + ["---", ""])


def _micro_batch(spec: dict[str, Any]) -> str:
    """What one device takes per forward pass, in the method's own rows."""
    n, method, dataset = spec["train"]["micro_batch_size"], spec["method"], spec["dataset"]
    if method["name"] == "sft":
        return f"{n} {'packed ' if dataset.get('packing') else ''}rows of {dataset['max_length']} tokens"
    if method["name"] == "grpo":
        return f"{n} completions (groups of {method.get('num_generations')})"
    return f"{n} {'preference pairs' if method['name'] == 'dpo' else 'rows'}"


def _hyperparameters(record: dict[str, Any]) -> list[str]:
    spec = record["spec"]
    method, optim, train = spec["method"], spec["optim"], spec["train"]
    rows = [
        ("method", f"{method['name']}, {method['weights']} weights"),
        ("precision", record.get("precision")),
        ("processes", record.get("world_size")),
        (
            "optimizer",
            f"{optim['name']}, lr {optim['learning_rate']}, {optim['scheduler']} schedule, "
            f"warmup {optim['warmup_ratio']}, weight decay {optim['weight_decay']}",
        ),
        ("steps", record["metrics"].get("global_step")),
        (
            "batch",
            f"{_micro_batch(spec)} x {train['gradient_accumulation_steps']} accumulation x "
            f"{record.get('world_size')} processes",
        ),
        ("seed", train["seed"]),
    ]
    if method["weights"] in ("lora", "qlora"):
        lora = method["lora"]
        rows.insert(
            1,
            (
                "LoRA",
                f"rank {lora['rank']}, alpha {lora['alpha']}, dropout {lora['dropout']}, "
                f"modules {', '.join(lora['target_modules'])}" + (", DoRA" if lora["use_dora"] else ""),
            ),
        )
    if method["weights"] == "qlora":
        rows.insert(
            2, ("quantization", f"{method['quant']['quant_type']}, double quant {method['quant']['double_quant']}")
        )
    if method["name"] in ("dpo", "kto", "grpo"):
        rows.insert(1, ("beta", method["beta"]))
    return ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


# What a post-training method's rows are (they are never packed, and the method, not a mask, says what is trained).
POST_TRAINING_ROWS = {
    "dpo": "preference pairs (a prompt, a chosen and a rejected reply) of at most {max_length} tokens each",
    "kto": "prompts with a desirable or undesirable reply, at most {max_length} tokens each",
    "grpo": "prompts of at most {max_length} tokens, with {max_completion_length}-token completions sampled while "
    "training",
}


def _data_lines(run_dir: Path, record: dict[str, Any]) -> list[str]:
    spec, report = record["spec"], _data_report(run_dir, record)
    dataset, method = spec["dataset"], spec["method"]
    sft = method["name"] == "sft"
    lines = []
    if report:
        lines += [
            "| source | rows | tokens | supervised tokens |" if sft else "| source | rows | tokens |",
            "|---|---|---|---|" if sft else "|---|---|---|",
        ]
        for source in report["sources"]["train"]:
            supervised = f" {source['supervised']:,} |" if sft else ""
            lines.append(f"| {source['name']} | {source['rows_kept']:,} | {source['tokens']:,} |{supervised}")
        lines.append("")
    else:
        lines.append(f"Source: `{dataset['path']}` (split {dataset['split']}).\n")
    if sft:
        rows = (
            f"sequences of at most {dataset['max_length']} tokens{', packed' if dataset['packing'] else ''}; loss on "
            f"{', '.join(dataset['train_roles'])} turns{' and the prompts' if dataset['train_on_inputs'] else ' only'}"
        )
    else:
        rows = POST_TRAINING_ROWS[method["name"]].format(
            max_length=dataset["max_length"], max_completion_length=method["max_completion_length"]
        )
    lines.append(
        f"Format `{dataset['format']}`, {rows}. Tokenized data cache key: "
        f"`{record.get('data', {}).get('key', 'unknown')}`."
    )
    return lines


def _eval_lines(run_dir: Path, record: dict[str, Any]) -> list[str]:
    path = RunDirectory(run_dir).eval_metrics
    if path.is_file():
        metrics = json.loads(path.read_text())
        tuned = {n: {**r, "predictions": []} for n, r in metrics["tuned"].items()}
        base = {n: {**r, "predictions": []} for n, r in (metrics.get("base") or {}).items()} or None
        table = render_table(metrics["summary"], tuned, base)
        return [
            "Accuracy with 95% Wilson intervals (correct/total); McNemar's exact test pairs base and tuned "
            "on the same problems.",
            "",
            table,
        ]
    losses = {
        k: v
        for k, v in record["metrics"].items()
        if (k.startswith("loss.") or k == "train_loss") and v is not None  # None: a loss no step measured
    }
    if not losses:
        return ["Not evaluated."]
    return ["| metric | value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in losses.items())]


def _usage(repo_id: str, adapter: bool) -> list[str]:
    if adapter:
        return [
            "```python",
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
            "```",
        ]
    return [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        "```",
        "",
        f"vLLM serves it as is: `vllm serve {repo_id}`.",
    ]


def model_card(run_dir: Path, record: dict[str, Any], *, repo_id: str, adapter: bool) -> str:
    spec = record["spec"]
    model = root_model(record)
    base = hub_base_model(model)
    base_text = f"[{base}](https://huggingface.co/{base})" if base else f"`{model['name']}`"
    if model.get("revision"):
        base_text += f" at revision `{model['revision']}`"
    if record.get("parent"):
        base_text += f", through the run `{Path(record['parent']['run_dir']).name}` ({record['parent']['method']})"
    what = "A LoRA adapter for" if adapter else "Fine-tuned from"
    version = record.get("versions", {}).get("hydratune", "unknown")
    lines = [
        _front_matter(record, adapter),
        f"# {repo_id}",
        "",
        f"{what} {base_text} with hydratune {version}: "
        f"{spec['method']['name']} on {spec['method']['weights']} weights.",
        "",
        "## Training data",
        "",
        *_data_lines(run_dir, record),
        "",
        "## Method and hyperparameters",
        "",
        *_hyperparameters(record),
        "",
        "## Evaluation",
        "",
        *_eval_lines(run_dir, record),
        "",
        "## Use",
        "",
        *_usage(repo_id, adapter),
        "",
        "## Reproduce",
        "",
        "```bash",
        record.get("command") or "(the command was not recorded)",
        "```",
        "",
    ]
    versions = record.get("versions", {})
    lines.append("Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".")
    if record.get("git_commit"):
        lines.append(f"Source commit: `{record['git_commit']}`.")
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: Path, folder: Path, *, repo_id: str, adapter: bool) -> Path:
    record = json.loads(RunDirectory(run_dir).record.read_text())
    path = folder / "README.md"
    path.write_text(model_card(run_dir, record, repo_id=repo_id, adapter=adapter))
    return path
