"""D2OC (density-driven optimal control) and the coverage baselines Lloyd and SMC."""

from morl.agents.d2oc.d2oc import D2OC
from morl.agents.d2oc.lloyd import Lloyd
from morl.agents.d2oc.smc import SMC

__all__ = ["D2OC", "Lloyd", "SMC"]
