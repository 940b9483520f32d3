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

from hydratune.evaluate.run_evaluation import render_table

# The offline default is the GGUF build of this Hub model; the card links the original.
EMBEDDED_HUB_NAMES = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def hub_base_model(model: dict[str, Any]) -> Optional[str]:
    """The Hub name of the base model, when it is one (not a local directory or a random-weight test model)."""
    if model.get("random_init"):
        return None
    name = model["name"]
    name = EMBEDDED_HUB_NAMES.get(name, name)
    return name if "/" in name and not name.startswith(("/", ".", "~")) and not Path(name).exists() else None


def _data_report(record: dict[str, Any]) -> Optional[dict]:
    path = Path(record.get("data", {}).get("directory", "")) / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _front_matter(record: dict[str, Any], adapter: bool) -> str:
    spec = record["spec"]
    base = hub_base_model(spec["model"])
    sources = [spec["dataset"]["path"], *(m.get("path") for m in spec["dataset"].get("mix") or [])]
    hub_datasets = [s for s in sources if s and "/" in s and not s.startswith(("/", ".", "generated:")) and not Path(s).exists()]
    lines = ["---", f"library_name: {'peft' if adapter else 'transformers'}"]
    if base:
        lines.append(f"base_model: {base}")
    lines.append("tags: [" + ", ".join(["hydratune", spec["method"]["name"], spec["method"]["weights"]]) + "]")
    if hub_datasets:
        lines.append("datasets: [" + ", ".join(hub_datasets) + "]")
    return "\n".join(lines + ["---", ""])


def _hyperparameters(record: dict[str, Any]) -> list[str]:
    spec = record["spec"]
    method, optim, train = spec["method"], spec["optim"], spec["train"]
    rows = [("method", f"{method['name']}, {method['weights']} weights"),
            ("precision", record.get("precision")), ("processes", record.get("world_size")),
            ("optimizer", f"{optim['name']}, lr {optim['learning_rate']}, {optim['scheduler']} schedule, "
                          f"warmup {optim['warmup_ratio']}, weight decay {optim['weight_decay']}"),
            ("steps", record["metrics"].get("global_step")),
            ("batch", f"{train['micro_batch_size']} packed rows of {spec['dataset']['max_length']} tokens x "
                      f"{train['gradient_accumulation_steps']} accumulation x {record.get('world_size')} processes"),
            ("seed", train["seed"])]
    if method["weights"] in ("lora", "qlora"):
        lora = method["lora"]
        rows.insert(1, ("LoRA", f"rank {lora['rank']}, alpha {lora['alpha']}, dropout {lora['dropout']}, "
                                f"modules {', '.join(lora['target_modules'])}" + (", DoRA" if lora["use_dora"] else "")))
    if method["weights"] == "qlora":
        rows.insert(2, ("quantization", f"{method['quant']['quant_type']}, double quant {method['quant']['double_quant']}"))
    if method["name"] in ("dpo", "kto", "grpo"):
        rows.insert(1, ("beta", method["beta"]))
    return ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _data_lines(record: dict[str, Any]) -> list[str]:
    spec, report = record["spec"], _data_report(record)
    dataset = spec["dataset"]
    lines = []
    if report:
        lines += ["| source | rows | tokens | supervised tokens |", "|---|---|---|---|"]
        for source in report["sources"]["train"]:
            lines.append(f"| {source['name']} | {source['rows_kept']:,} | {source['tokens']:,} | {source['supervised']:,} |")
        lines.append("")
    else:
        lines.append(f"Source: `{dataset['path']}` (split {dataset['split']}).\n")
    lines.append(f"Format `{dataset['format']}`, sequences of at most {dataset['max_length']} tokens"
                 f"{', packed' if dataset['packing'] else ''}; loss on {', '.join(dataset['train_roles'])} turns"
                 f"{' and the prompts' if dataset['train_on_inputs'] else ' only'}. "
                 f"Tokenized data cache key: `{record.get('data', {}).get('key', 'unknown')}`.")
    return lines


def _eval_lines(run_dir: Path, record: dict[str, Any]) -> list[str]:
    path = run_dir / "eval" / "metrics.json"
    if path.is_file():
        metrics = json.loads(path.read_text())
        tuned = {n: {**r, "predictions": []} for n, r in metrics["tuned"].items()}
        base = {n: {**r, "predictions": []} for n, r in (metrics.get("base") or {}).items()} or None
        table = render_table(metrics["summary"], tuned, base)
        return ["Accuracy with 95% Wilson intervals (correct/total); McNemar's exact test pairs base and tuned "
                "on the same problems.", "", table]
    losses = {k: v for k, v in record["metrics"].items() if k.startswith("loss.") or k == "train_loss"}
    if not losses:
        return ["Not evaluated."]
    return ["| metric | value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in losses.items())]


def _usage(repo_id: str, adapter: bool) -> list[str]:
    if adapter:
        return ["```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```"]
    return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", "",
            f"vLLM serves it as is: `vllm serve {repo_id}`."]


def model_card(run_dir: Path, record: dict[str, Any], *, repo_id: str, adapter: bool) -> str:
    spec = record["spec"]
    model = spec["model"]
    base = hub_base_model(model)
    base_text = f"[{base}](https://huggingface.co/{base})" if base else f"`{model['name']}`"
    if model.get("revision"):
        base_text += f" at revision `{model['revision']}`"
    what = "A LoRA adapter for" if adapter else "Fine-tuned from"
    version = record.get("versions", {}).get("hydratune", "unknown")
    lines = [_front_matter(record, adapter), f"# {repo_id}", "",
             f"{what} {base_text} with hydratune {version}: {spec['method']['name']} on {spec['method']['weights']} weights.", "",
             "## Training data", "", *_data_lines(record), "",
             "## Method and hyperparameters", "", *_hyperparameters(record), "",
             "## Evaluation", "", *_eval_lines(run_dir, record), "",
             "## Use", "", *_usage(repo_id, adapter), "",
             "## Reproduce", "", "```bash", record.get("command") or "(the command was not recorded)", "```", ""]
    versions = record.get("versions", {})
    lines.append("Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".")
    if record.get("git_commit"):
        lines.append(f"Source commit: `{record['git_commit']}`.")
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: Path, folder: Path, *, repo_id: str, adapter: bool) -> Path:
    record = json.loads((run_dir / "run.json").read_text())
    path = folder / "README.md"
    path.write_text(model_card(run_dir, record, repo_id=repo_id, adapter=adapter))
    return path
