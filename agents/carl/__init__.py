"""CaRL: the simple route-completion reward and large-minibatch PPO with a Beta policy."""

from morl.agents.carl.carl_ppo import CaRLPPO, linear_schedule
from morl.agents.carl.policies import BetaDistribution, BetaPolicy
from morl.agents.carl.reward import CaRLReward, CaRLVecReward

__all__ = ["BetaDistribution", "BetaPolicy", "CaRLPPO", "CaRLReward", "CaRLVecReward", "linear_schedule"]
