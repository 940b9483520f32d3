"""What a run leaves behind: spec.json and run.json, curves, a sample reply, sweep summaries."""
