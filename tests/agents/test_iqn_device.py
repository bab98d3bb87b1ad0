"""Device handling of the IQN agents: the replay buffer they build and the device-side sampling path."""

import pytest
import torch as th

from morl.agents.iqn import IQN, EnsembleIQN
from morl.buffers import DeviceReplayBuffer


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_iqn_builds_a_device_replay_buffer_that_samples_on_the_host_without_cuda(device):
    kwargs = {"device_storage": True}
    model = IQN("MlpPolicy", "CartPole-v1", learning_starts=10, device=device,
                replay_buffer_kwargs=kwargs, seed=0)
    assert kwargs == {"device_storage": True}  # the caller's dict is not changed
    assert isinstance(model.replay_buffer, DeviceReplayBuffer)
    assert model.device.type == ("cuda" if device == "auto" and th.cuda.is_available() else "cpu")
    default = IQN("MlpPolicy", "CartPole-v1", device="cpu")
    assert default.replay_buffer.device_storage is False  # CPU: SB3's NumPy path, unchanged


def test_ensemble_trains_through_the_device_sampling_path():
    model = EnsembleIQN("MlpPolicy", "CartPole-v1", n_ensemble=3, bootstrap_prob=0.5, learning_starts=50,
                        batch_size=16, replay_buffer_kwargs={"device_storage": True}, device="cpu", seed=0)
    assert model.replay_buffer.device_storage
    model.learn(120)
    assert model._n_updates > 0
    th.manual_seed(0)
    data, masks = model._sample(16)
    assert masks.shape == (16, 3) and data.observations.shape == (16, 4)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.train(gradient_steps=2, batch_size=16)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
