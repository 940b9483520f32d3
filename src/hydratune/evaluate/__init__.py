"""Evaluation: task registry, batched generation, scoring with confidence intervals."""
