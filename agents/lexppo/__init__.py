"""LexPPO: lexicographic PPO (Skalse et al. 2022, arXiv 2212.13769) generalised to preorders, one critic per objective."""

from morl.agents.lexppo.lex_ppo import LexPPO, lexicographic_weights, strictly_above
from morl.agents.lexppo.policies import LexActorCriticCnnPolicy, LexActorCriticPolicy
from morl.agents.lexppo.rollout import VecVectorReward, VectorRolloutBuffer

__all__ = ["LexActorCriticCnnPolicy", "LexActorCriticPolicy", "LexPPO", "VecVectorReward", "VectorRolloutBuffer",
           "lexicographic_weights", "strictly_above"]
