"""docs/configuration.md is generated from the spec: stale documentation fails here."""

from __future__ import annotations

from hydratune.commands.config_reference import DEFAULT_PATH, main, render
from hydratune.config.spec_builder import schema_keys


def test_reference_is_current():
    main(["--check"])  # exits 1 with "run hydratune-config-reference" when stale


def test_every_leaf_key_is_documented():
    text = render()
    leaves = [k for k, v in schema_keys().items() if not k.startswith("run.output_dir")]
    missing = [k for k in leaves if f"`{k.replace('dataset.mix.', 'dataset.mix[].')}`" not in text]
    assert not missing, missing


def test_stale_file_is_detected(tmp_path):
    import pytest

    stale = tmp_path / "configuration.md"
    stale.write_text(DEFAULT_PATH.read_text().replace("Peak learning rate.", "Learning rate."))
    with pytest.raises(SystemExit) as info:
        main(["--check", "--path", str(stale)])
    assert info.value.code == 1
