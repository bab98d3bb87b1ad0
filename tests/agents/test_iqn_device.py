"""Device handling of the IQN agents: the replay buffer they build and the device-side sampling path."""

import pytest
import torch as th

from morl.agents.iqn import IQN, EnsembleIQN
from morl.replay import DeviceReplayBuffer


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
    rows, envs = model.replay_buffer.sample_indices(16)  # the draw _sample makes, replayed from the same seed
    th.manual_seed(0)
    data, masks = model._sample(16)
    # each row's ensemble masks are the ones drawn for that transition, and the data is that transition's
    assert th.equal(masks, th.as_tensor(model.bootstrap_masks[rows.numpy()], dtype=th.float32))
    expected = model.replay_buffer.samples_at(rows, envs)
    for name in ("observations", "actions", "rewards", "dones"):
        assert th.equal(getattr(data, name), getattr(expected, name)), name
    assert 0 < float(masks.mean()) < 1  # bootstrap_prob 0.5: the masks are not all one value
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.train(gradient_steps=2, batch_size=16)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
