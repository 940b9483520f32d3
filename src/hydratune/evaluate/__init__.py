"""Evaluation: task registry, batched generation, scoring with confidence intervals, the targets a
model can be scored as, and the evaluation check of a spec."""
