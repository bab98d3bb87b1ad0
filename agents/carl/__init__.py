"""CaRL: the simple route-completion reward and large-minibatch PPO with a Beta policy."""

from agents.carl.carl_ppo import CaRLPPO, linear_schedule
from agents.carl.policies import BetaDistribution, BetaPolicy
from agents.carl.reward import CaRLReward, CaRLVecReward

__all__ = ["BetaDistribution", "BetaPolicy", "CaRLPPO", "CaRLReward", "CaRLVecReward", "linear_schedule"]
