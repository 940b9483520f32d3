"""The run: its recipe (claim, plan, preprocess, fit, export, evaluate, record), the validation that
gathers every stage's check of the spec, and what a run leaves (its record, summary, curves).
"""
