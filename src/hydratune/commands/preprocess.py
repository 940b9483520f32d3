"""`preprocess`: build (or find) the tokenized shards of a run's data and print the inspection report.

preprocess +experiment=gsm8k_lora dataset.path=../shared/data/gsm8k
"""

from __future__ import annotations

import sys

from hydratune.commands.cli import hydra_entry
from hydratune.config.spec import RunSpec
from hydratune.data.prepare_data import PreparedData, run_preprocess
from hydratune.data.report import render_report


def run_preprocess_report(spec: RunSpec) -> PreparedData:
    prepared = run_preprocess(spec)  # a DataError is reported by the command line, file:line and fix
    status = "cache hit" if prepared.cache_hit else "built"
    print(f"{status}: {prepared.directory} ({prepared.seconds:.2f}s)")
    print(render_report(prepared.report, color=sys.stdout.isatty()))
    print(f"\nreport: {prepared.directory / 'report.md'}")
    return prepared


main = hydra_entry(run_preprocess_report, job_name="preprocess")

if __name__ == "__main__":
    main()
