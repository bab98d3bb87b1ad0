"""morl's agents. Each family lives in its own sub-package; they never import each other."""

from agents.carl import CaRLPPO, CaRLReward, CaRLVecReward
from agents.d2oc import D2OC, SMC, Lloyd
from agents.iqn import IQN, QDIQN, EnsembleIQN
from agents.lexppo import LexPPO
from agents.subpo import ModPO, SubPO

__all__ = ["CaRLPPO", "CaRLReward", "CaRLVecReward", "D2OC", "EnsembleIQN", "IQN", "LexPPO", "Lloyd", "ModPO", "QDIQN", "SMC", "SubPO"]
