"""TD-MPC2: decoder-free latent world model with value and policy prior (``tdmpc2``)."""

from .model import TDMPC2Config, TDMPC2Model

__all__ = ["TDMPC2Config", "TDMPC2Model"]
