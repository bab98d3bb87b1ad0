"""IQN agents: scalar :class:`IQN`, the preordered :class:`QDIQN` and the :class:`EnsembleIQN` baseline.

- :class:`IQN`: implicit quantile networks (Dabney et al. 2018) on a scalar reward;
- :class:`QDIQN`: one quantile head per objective, acting and bootstrapping through the preorder's
  optimal subset under quantile dominance ("Beyond Scalar Rewards", arXiv 2603.20230);
- :class:`EnsembleIQN`: a bootstrapped ensemble of IQN heads, the paper's ensemble baseline.
"""

from morl.agents.iqn.ensemble_iqn import EnsembleIQN
from morl.agents.iqn.iqn import IQN
from morl.agents.iqn.losses import quantile_huber_loss
from morl.agents.iqn.policies import IQNPolicy
from morl.agents.iqn.qd_policies import QDIQNPolicy
from morl.agents.iqn.qdiqn import QDIQN

__all__ = ["IQN", "QDIQN", "EnsembleIQN", "IQNPolicy", "QDIQNPolicy", "quantile_huber_loss"]
