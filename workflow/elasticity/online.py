"""Step `finetune_online`: online RL (RLOO) in the inverse stage, rewarded by the task's scorer.

A step of its own, not an algorithm of `finetune`: the reward runs the scorer's code, and only
the online-RL links should rerun when that code changes (a step's code fingerprint is its
import closure, elasticity.fingerprint). The training itself is `finetuning.finetune`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from elasticity.finetuning import finetune
from elasticity.scoring import load_scorer


def reward_function(*, scorer: str, model: dict[str, str] | None, device: str,
                    batch_size: int, cache: str | None, sign: float) -> Callable[..., list[float]]:
    """RLOOTrainer's reward function: sign x the scorer's score of each completion (sign -1 when
    the stage's pool is the negative one: the inverse stage then rewards negative sentiment)."""
    score, _ = load_scorer(scorer, model=model, device=device, batch_size=batch_size,
                           cache=cache)

    def reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [sign * float(s) for s in score(prompts, completions)["score"]]

    # TRL logs the reward under the function's name (rewards/<name>/mean).
    reward.__name__ = scorer.replace("-", "_")
    return reward


def finetune_online(model: str, pool: str, out: str, *, reward: dict[str, Any],
                    **kwargs: Any) -> dict[str, Any]:
    """`finetuning.finetune` of an online-RL link; reward: {scorer, model, device, batch_size,
    cache, sign}, the settings the job is stamped with."""
    return finetune(model, pool, out, reward=reward, reward_function=reward_function(**reward),
                    **kwargs)
