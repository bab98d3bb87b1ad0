"""morl's agents. Each family lives in its own sub-package; they never import each other."""

from morl.agents.carl import CaRLPPO, CaRLReward, CaRLVecReward
from morl.agents.d2oc import D2OC, SMC, Lloyd
from morl.agents.iqn import IQN, QDIQN, EnsembleIQN
from morl.agents.lexppo import LexPPO
from morl.agents.subpo import ModPO, SubPO

__all__ = ["CaRLPPO", "CaRLReward", "CaRLVecReward", "D2OC", "EnsembleIQN", "IQN", "LexPPO", "Lloyd", "ModPO", "QDIQN", "SMC", "SubPO"]
