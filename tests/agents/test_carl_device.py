"""CaRLPPO's rollout buffer cuts minibatches on the device; with vector rewards it is MORolloutBuffer."""

import numpy as np

from morl.agents.carl import CaRLPPO
from morl.envs.driving import make_vec
from morl.buffers import DeviceRolloutBuffer, MORolloutBuffer


def test_carl_uses_device_rollout_buffers_and_trains():
    venv = make_vec("route", 2, action_type="continuous", seed=0)
    plain = CaRLPPO("BetaPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, log_vector_returns=False,
                    policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)
    assert type(plain.rollout_buffer) is DeviceRolloutBuffer
    vector = CaRLPPO("BetaPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs={"net_arch": [16]},
                     device="cpu", seed=0)
    assert isinstance(vector.rollout_buffer, MORolloutBuffer) and isinstance(vector.rollout_buffer, DeviceRolloutBuffer)
    plain.learn(32)
    loss = plain.logger.name_to_value["train/value_loss"]
    assert np.isfinite(loss) and plain._n_updates == 1  # one rollout, one epoch
