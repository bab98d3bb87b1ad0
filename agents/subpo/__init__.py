"""SubPO (submodular policy optimisation, arXiv 2307.13372) and its modular baseline ModPO."""

from morl.agents.subpo.policies import SubPOPolicy
from morl.agents.subpo.subpo import ModPO, SubPO

__all__ = ["SubPO", "ModPO", "SubPOPolicy"]
