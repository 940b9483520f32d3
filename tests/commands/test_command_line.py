"""What a user types: every console script's exit codes, Hydra's flags in any position, and
bad data reported by `train` as `preprocess` reports it, through the installed scripts."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ..conftest import REPO

Q = "+experiment=quickstart"


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which(args[0]), *args[1:]], capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.mark.parametrize(
    "args",
    [
        [Q, "--cfg", "job"],
        ["--cfg", "job", Q],
        ["--info", Q],
        [Q, "--info", "defaults"],
        ["--help"],
        ["--config-dir", "examples", Q, "--cfg", "job"],
        [Q, "--config-dir", "examples", "--cfg", "job"],
    ],
    ids=lambda a: " ".join(a),
)
def test_hydra_flags_work_before_and_after_overrides(args, tmp_path):
    out = run("train", *args, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    if "job" in args:
        assert "embedded:smollm2-135m-instruct" in out.stdout and "max_steps: 20" in out.stdout


def test_multirun_flag_after_overrides(tmp_path):
    out = run("train", Q, "run.dry_run=true", "optim.lr=1e-3,2e-3", "-m", f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(
        json.loads((tmp_path / str(i) / "spec.json").read_text())["optim"]["learning_rate"] for i in (0, 1)
    ) == [1e-3, 2e-3]


@pytest.mark.parametrize("tool", ["train", "preprocess"])
def test_bad_data_is_one_message_naming_file_and_line(tool, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n{"question": broken\n')
    out = run(
        tool,
        "model=tiny_llama",
        f"dataset.path={data}",
        "dataset.eval_split=null",
        "eval=[none]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"Data error: {data}:2: bad JSON" in out.stderr and "dataset.bad_rows=drop" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("tool", ["hydratune-export", "hydratune-eval"])
def test_other_commands_exit_2_on_a_user_error(tool, tmp_path):
    out = run(tool, str(tmp_path / "not-a-run"))
    assert out.returncode == 2, (out.stdout[-1000:], out.stderr[-2000:])
    assert f"{tmp_path / 'not-a-run'}: " in out.stderr and "Traceback" not in out.stderr


def test_deepspeed_zero3_json_must_save_full_weights(tmp_path):
    from hydratune.commands.cli import compose_spec
    from hydratune.config.problems import ConfigError

    from ..conftest import cpu_env

    config = {
        "zero_optimization": {"stage": 3},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
    }
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="stage3_gather_16bit_weights_on_model_save"):
        compose_spec([Q, "sharding=deepspeed_zero3", f"sharding.deepspeed.config_file={path}"], env=cpu_env())
    config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    path.write_text(json.dumps(config))
    compose_spec([Q, "sharding=deepspeed_zero3", f"sharding.deepspeed.config_file={path}"], env=cpu_env())
