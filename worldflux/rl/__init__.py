"""Reinforcement learning in learned simulators: stable-baselines3 agents trained in dream
environments and scored on the real environment (agent recipes in ``agents/``)."""

from .evaluate import Episodes, first_episodes, real_env_episodes
from .recipes import AgentRecipe, Evaluation, find_agent_recipe, read_agent_recipe
from .train import agent_eval, format_summary, train_agent

__all__ = [
    "AgentRecipe",
    "Episodes",
    "Evaluation",
    "agent_eval",
    "find_agent_recipe",
    "first_episodes",
    "format_summary",
    "read_agent_recipe",
    "real_env_episodes",
    "train_agent",
]
