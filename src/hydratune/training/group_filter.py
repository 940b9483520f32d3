"""GRPO that trains only on groups whose rewards differ (DAPO's dynamic sampling).

A group is the num_generations completions of one prompt. When they all got the same reward
(all right, all wrong) every advantage in it is zero: the group costs a forward and backward
pass and moves nothing. With method.group_filter=spread, a sampling round whose batch has such
groups is followed by more rounds on other prompts, up to method.group_filter_max_rounds, and
the batch trained on is assembled from the groups with spread, in the order they were sampled.
It never stalls: short of enough of them after the last round, the batch is filled with groups
without spread and a warning says so.

The decision is taken on the rewards gathered from every rank, so all ranks run the same
rounds (the same generate and forward calls, which FSDP2 and ZeRO-3 need), and each rank then
takes its own share of the assembled batch: the same number of rows as TRL's own batch.
Advantages are TRL's, computed per round: with method.scale_rewards=batch a kept group's are
scaled by the spread of the round it was sampled in.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from hydratune.config.problems import ConfigError, Problem

log = logging.getLogger(__name__)

# TRL's per-completion outputs, with how each is padded: (side, pad value; None: the tokenizer's pad id).
PADDED = {
    "prompt_ids": ("left", None),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 0.0),
    "tool_mask": ("right", 1),
}
PER_ROW = ("advantages",)


def group_spread(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group of consecutive rows, whether its rewards differ: TRL's test for a zero standard
    deviation (rows no reward could score are NaN and left out; a group of them has no spread)."""
    from trl.trainer.utils import nanstd

    std = nanstd(rewards.view(-1, group_size), dim=1)
    return ~(torch.isclose(std, torch.zeros_like(std)) | torch.isnan(std))


@dataclass(frozen=True)
class Selection:
    groups: list[tuple[int, int]]  # (round, group within the round), in batch order
    with_spread: int  # how many of them have spread; the rest fill a batch that was short


def select_groups(spread_per_round: list[list[bool]], batch_groups: int) -> Selection:
    """The batch's groups: those with spread in sampling order; when fewer than batch_groups
    have it, then those without, also in sampling order."""
    sampled = [(r, g) for r, spread in enumerate(spread_per_round) for g in range(len(spread))]
    kept = [(r, g) for r, g in sampled if spread_per_round[r][g]][:batch_groups]
    fill = [(r, g) for r, g in sampled if not spread_per_round[r][g]][: batch_groups - len(kept)]
    if len(kept) + len(fill) < batch_groups:
        raise ValueError(f"{len(sampled)} groups sampled for a batch of {batch_groups}")
    return Selection(kept + fill, len(kept))


def combine_metric(key: str, values: list[float]) -> float:
    """One value of a metric TRL logged once per sampling round: over all rounds' completions."""
    valid = [v for v in values if not math.isnan(v)]
    if not valid:
        return float("nan")
    name = key.rsplit("/", 1)[-1]
    if name.startswith("max") or name.endswith("_max"):
        return max(valid)
    if name.startswith("min") or name.endswith("_min"):
        return min(valid)
    return sum(valid) / len(valid)


class GroupFilter:
    """The filter as a mixin of TRL's GRPOTrainer; off unless build_trainer sets max_rounds."""

    group_filter_max_rounds = 0

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # every rank's rows: TRL gathers them to normalize groups
        return rewards_per_func

    def _weighted(self, per_func: torch.Tensor) -> torch.Tensor:
        """The rewards as TRL sums them (rows no reward could score: NaN)."""
        rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(per_func).all(dim=1)] = torch.nan
        return rewards

    def _generate_and_score_completions(self, inputs):
        if not self.group_filter_max_rounds or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        metrics = self._metrics["train"]
        marks = {key: len(values) for key, values in metrics.items()}
        batch_groups = len(inputs) * self.accelerator.num_processes // self.num_generations
        outputs, spread, rewards = [], [], []
        for round_index in range(self.group_filter_max_rounds):
            prompts = inputs if round_index == 0 else self._more_prompts(round_index, len(inputs), batch_groups)
            outputs.append(super()._generate_and_score_completions(prompts))
            rewards.append(self._gathered_rewards)
            spread.append(group_spread(self._weighted(self._gathered_rewards), self.num_generations).tolist())
            if sum(map(sum, spread)) >= batch_groups:
                break
        selection = select_groups(spread, batch_groups)
        self._collapse_round_metrics(marks, torch.cat(rewards))
        self._log_groups(selection, spread, batch_groups)
        return self._assemble(outputs, selection, len(inputs))

    def _more_prompts(self, round_index: int, local_rows: int, batch_groups: int) -> list[dict[str, Any]]:
        """Another batch of prompts, each repeated num_generations times and split over the ranks as
        TRL's sampler does. Every rank draws the same prompts: the generator is seeded alike on all."""
        dataset = self.train_dataset
        seed = self.args.seed + 7919 * (self.state.global_step * self.group_filter_max_rounds + round_index)
        generator = torch.Generator().manual_seed(seed)
        if len(dataset) >= batch_groups:
            picked = torch.randperm(len(dataset), generator=generator)[:batch_groups]
        else:
            picked = torch.randint(len(dataset), (batch_groups,), generator=generator)
        rows = [dataset[int(i)] for i in picked for _ in range(self.num_generations)]
        start = self.accelerator.process_index * local_rows
        return rows[start : start + local_rows]

    def _gathered(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of one output, padded to a common width where it is per token."""
        if tensor.dim() > 1:
            side, value = PADDED[key]
            value = self._tokenizer.pad_token_id if value is None else value
            tensor = self.accelerator.pad_across_processes(tensor, dim=1, pad_index=value, pad_first=side == "left")
        return self.accelerator.gather(tensor)

    def _assemble(self, outputs: list[dict], selection: Selection, local_rows: int) -> dict[str, Any]:
        """This rank's rows of the selected groups, as one output of TRL's own shape."""
        unknown = set(outputs[0]) - set(PADDED) - set(PER_ROW) - {"num_items_in_batch"}
        if unknown:  # outputs this filter does not know how to pad (images, or a TRL release's new ones)
            raise ConfigError(
                [
                    Problem(
                        "method.group_filter=spread",
                        f"the filter cannot assemble GRPO's {sorted(unknown)} outputs",
                        "set method.group_filter=none",
                    )
                ]
            )
        n = self.num_generations
        global_rows = local_rows * self.accelerator.num_processes
        rows = torch.tensor([r * global_rows + g * n + i for r, g in selection.groups for i in range(n)])
        start = self.accelerator.process_index * local_rows
        mine = rows[start : start + local_rows]
        out: dict[str, Any] = {}
        for key in outputs[0]:
            if key == "num_items_in_batch":
                continue
            per_round = [self._gathered(key, output[key]) for output in outputs]
            out[key] = _pad_and_cat(per_round, key, self._tokenizer.pad_token_id)[mine.to(per_round[0].device)]
        loss_mask = out["completion_mask"]
        if "tool_mask" in out:
            loss_mask = loss_mask * out["tool_mask"]
        # TRL normalizes the loss by the completion tokens of the whole batch on all ranks
        out["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return out

    def _collapse_round_metrics(self, marks: dict[str, int], per_func: torch.Tensor) -> None:
        """TRL logs once per sampling round; a step's log holds one value per metric, over every
        completion sampled. The rewards' spreads are taken anew over all of them (a mean of the
        rounds' spreads would not be one)."""
        from trl.trainer.utils import nanstd

        metrics = self._metrics["train"]
        for key, values in metrics.items():
            start = marks.get(key, 0)
            if len(values) - start > 1:
                values[start:] = [combine_metric(key, values[start:])]
        exact = {"reward": self._weighted(per_func)}
        exact.update({f"rewards/{name}": per_func[:, i] for i, name in enumerate(self.reward_func_names)})
        for key, rewards in exact.items():
            mean_key, std_key = (key, "reward_std") if key == "reward" else (f"{key}/mean", f"{key}/std")
            metrics[mean_key][-1] = torch.nanmean(rewards).item()
            metrics[std_key][-1] = nanstd(rewards).item()

    def _log_groups(self, selection: Selection, spread: list[list[bool]], batch_groups: int) -> None:
        sampled = sum(map(len, spread))
        with_spread = sum(map(sum, spread))
        metrics = self._metrics["train"]
        metrics["groups/no_spread"].append(1 - with_spread / sampled)
        # with no group kept, the prompts it took to find none
        metrics["groups/prompts_per_kept_group"].append(sampled / max(selection.with_spread, 1))
        metrics["groups/rounds"].append(float(len(spread)))
        metrics["groups/no_spread_trained"].append(1 - selection.with_spread / batch_groups)
        if selection.with_spread < batch_groups and self.accelerator.is_main_process:
            log.warning(
                "method.group_filter=spread: after %d sampling rounds (%d prompts) only %d of the batch's %d groups "
                "had rewards that differ; training goes on with %d groups whose rewards are all equal (zero "
                "advantage) filling the batch. Raise method.group_filter_max_rounds or method.num_generations, "
                "or use prompts the policy sometimes solves and sometimes not.",
                len(spread),
                sampled,
                selection.with_spread,
                batch_groups,
                batch_groups - selection.with_spread,
            )


def _pad_and_cat(tensors: list[torch.Tensor], key: str, pad_token_id: int) -> torch.Tensor:
    """Rounds' rows stacked, each padded on its side to the widest round."""
    if tensors[0].dim() == 1:
        return torch.cat(tensors)
    side, value = PADDED[key]
    value = pad_token_id if value is None else value
    width = max(t.size(1) for t in tensors)
    padded = []
    for t in tensors:
        extra = t.new_full((t.size(0), width - t.size(1), *t.shape[2:]), value)
        padded.append(torch.cat([extra, t] if side == "left" else [t, extra], dim=1))
    return torch.cat(padded)
