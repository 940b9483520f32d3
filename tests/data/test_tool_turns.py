"""Tool calls, tool results and reasoning pass through to a chat template that renders them,
and a template that would drop them is refused for the row, with the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.slow

# ChatML with tools in the system turn, <think> reasoning and <tool_call> blocks (the shape of Qwen-style templates).
TOOLS_TEMPLATE = """{%- if tools %}<|im_start|>system
Tools: {{ tools | tojson }}<|im_end|>
{% endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>
{% endif %}{{ m.content or '' }}{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>\
{% endfor %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ROW = {
    "tools": [WEATHER],
    "messages": [
        {"role": "user", "content": "Is it raining in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "name": "get_weather", "content": "light rain, 7 C"},
        {"role": "assistant", "reasoning_content": "The tool says light rain.", "content": "Yes, light rain in Oslo."},
    ],
}


def preprocess(run_dir: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            shutil.which("preprocess"),
            "model=tiny_llama",
            f"dataset.path={data}",
            "dataset.format=messages",
            "dataset.max_length=256",
            "dataset.eval_split=null",
            "eval=[none]",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def test_tool_calls_and_reasoning_are_rendered_and_trained(tmp_path):
    import datasets

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import load_tokenizer

    data = tmp_path / "tools.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    refused = preprocess(tmp_path / "refused", data)  # SmolLM2's template has no tool calls
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"{data}:1" in refused.stderr and "does not render its turn 1 tool call" in refused.stderr, refused.stderr[
        -2000:
    ]
    assert "model.chat_template" in refused.stderr

    template = tmp_path / "tools.jinja"
    template.write_text(TOOLS_TEMPLATE)
    built = preprocess(tmp_path / "built", data, f"model.chat_template={template}")  # the fix the message gives
    assert built.returncode == 0, built.stderr[-2000:]
    directory = Path(built.stdout.split("report: ", 1)[1].split()[0]).parent
    manifest = json.loads((directory / "manifest.json").read_text())
    (row,) = datasets.concatenate_datasets(
        [datasets.Dataset.from_file(str(directory / n)) for n in manifest["shards"]["train"]]
    )

    tokenizer = load_tokenizer(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root())
    text = tokenizer.decode(row["input_ids"])
    trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert 'Tools: [{"type": "function"' in text  # the row's tools reach the template
    assert (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in trained
    )  # the call is learned
    assert "<think>The tool says light rain.</think>" in trained and "Yes, light rain in Oslo." in trained
    assert "light rain, 7 C" in text and "light rain, 7 C" not in trained  # the tool's result is context, not a target
    assert "Is it raining" not in trained
