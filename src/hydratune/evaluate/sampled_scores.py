"""Scores of k sampled replies per problem, as reports of RL-tuned models give them:

- pass@1, the mean over the k samples of each reply being right (the share a sampled reply
  solves, the figure R1-style reports give);
- pass@k, the chance that at least one of k replies is right (the unbiased estimator over the
  samples drawn);
- maj@k, whether the answer most of the k replies give is right (self-consistency).

Each under every answer parsing the task scores (GSM8K: strict and flexible), because a gain
in the strict one alone can be the answer format moving, not the answers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from hydratune.evaluate.statistics import pass_at_k
from hydratune.evaluate.tasks import Question, Task


def reported_metrics(task: Task, options: Any) -> tuple[str, ...]:
    """What a generation task reports with these options: its greedy metrics, then the sampled ones."""
    return task.metrics + sampled_metric_names(task, getattr(options, "num_samples", 0))


def sampled_metric_names(task: Task, num_samples: int) -> tuple[str, ...]:
    """The per-problem scores `score_samples` adds for k = num_samples (pass@k and maj@k from k = 2)."""
    if not num_samples or not task.parsings:
        return ()
    suffixes = ["pass_at_1"] + ([f"pass_at_{num_samples}", f"maj_at_{num_samples}"] if num_samples > 1 else [])
    return tuple(f"{parsing}_{suffix}" for parsing in task.parsings for suffix in suffixes)


def score_samples(task: Task, problem: Question, replies: Sequence[str]) -> dict[str, Any]:
    """The sampled replies with their scores, and the problem's pass@1, pass@k and maj@k per parsing."""
    scored = [{"generated": reply, **task.score(reply, problem)} for reply in replies]
    k = len(replies)
    out: dict[str, Any] = {"samples": scored}
    for parsing, (correct_key, answer_key) in task.parsings.items():
        right = [bool(s[correct_key]) for s in scored]
        out[f"{parsing}_pass_at_1"] = sum(right) / k
        if k > 1:
            out[f"{parsing}_pass_at_{k}"] = pass_at_k(k, sum(right), k)
            out[f"{parsing}_maj_at_{k}"] = _majority_right([s[answer_key] for s in scored], right)
    return out


def _majority_right(answers: Sequence[Any], right: Sequence[bool]) -> bool:
    """Whether the most frequent parsed answer is right; replies without an answer do not vote,
    and a tie goes to the answer given first."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)
    return next(r for a, r in zip(answers, right) if a == winner)
