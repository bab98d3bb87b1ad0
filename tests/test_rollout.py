"""The array rollout path (morl.rollout) gives what SB3's own collect_rollouts gives on the same env chain.

The reference is SB3's ``OnPolicyAlgorithm.collect_rollouts`` itself (``array_rollouts = False``), run on an
identical env chain (the one ``morl train`` builds for the batched simulator) with the same weights and the
same torch / NumPy / env seeds. A short time limit makes episodes end by truncation inside the rollout, and
the untrained policy ends others by collisions and leaving the road (termination).
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from morl.agents.carl import CaRLPPO
from morl.agents.lexppo import LexPPO
from morl.buffers import MORolloutBuffer
from morl.config import config_from_dict
from morl.experiment import agent_class, make_vec_env
from morl.rollout import ArrayRollouts, with_array_rollouts
from morl.vec_arrays import StepInfos, array_step_env

E, T = 8, 48
BOOTSTRAPPED = ("rewards", "returns", "advantages", "vector_rewards", "vector_returns")
NET = dict(net_arch=dict(pi=[16], vf=[16]))


def _config(wrappers=None, agent="CaRLPPO"):
    env = {"scenario": "route", "kwargs": {"action_type": "continuous", "max_steps": 20},
           "preorder": "safety > rules > progress > comfort"}
    if wrappers is not None:
        env["wrappers"] = wrappers
    return config_from_dict({"name": "rollout_test", "env": env, "agent": {"name": agent},
                             "train": {"total_timesteps": 1, "n_envs": E}})


class _Record(BaseCallback):
    """What a callback sees at each step: the ended envs, their infos' keys and values, the rewards."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def _on_step(self) -> bool:
        dones = np.asarray(self.locals["dones"]).copy()
        infos = self.locals["infos"]
        ended = {int(i): {k: (np.asarray(v).copy() if k != "episode" else (float(v["r"]), int(v["l"])))
                          for k, v in dict(infos[i]).items()}
                 for i in np.flatnonzero(dones)}
        self.steps.append((dones, np.array(self.locals["rewards"], copy=True), ended,
                           np.asarray(infos[0]["vector_reward"]).copy(), len(infos)))
        return True


def _collect(model, seed: int, rollouts: int = 2):
    """``rollouts`` rollouts from a seeded start; returns the buffers' arrays, the callback's record and the
    episode statistics."""
    th.manual_seed(seed)
    np.random.seed(seed)
    model.env.seed(seed)
    record = _Record()
    if isinstance(model.rollout_buffer, MORolloutBuffer):  # as CaRLPPO.learn sets it up
        model.rollout_buffer.read_vector_rewards_from(model.env)
    _, callback = model._setup_learn(rollouts * T * E, callback=record)
    callback.on_training_start(locals(), globals())
    buffers = []
    for _ in range(rollouts):
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, T)
        b = model.rollout_buffer
        fields = ["observations", "actions", "rewards", "episode_starts", "values", "log_probs", "returns",
                  "advantages"]
        fields += [f for f in ("vector_rewards", "vector_values", "vector_returns") if hasattr(b, f)]
        buffers.append({f: getattr(b, f).copy() for f in fields} | {"ends": np.array(model._last_episode_starts)})
    episodes = [(float(ep["r"]), int(ep["l"])) for ep in model.ep_info_buffer]
    return buffers, record.steps, episodes


def _pair(make):
    """The same model twice (same weights): one on the array path, one on SB3's loop."""
    fast, slow = make(), make()
    slow.policy.load_state_dict(fast.policy.state_dict())
    slow.array_rollouts = False
    assert fast.uses_array_rollouts() and not slow.uses_array_rollouts()
    return fast, slow


def _assert_same(fast, slow, seed=3):
    got, got_steps, got_eps = _collect(fast, seed)
    want, want_steps, want_eps = _collect(slow, seed)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for name in g:
            if name in BOOTSTRAPPED:
                # one value forward over the truncated envs' terminal observations against SB3's forward per env:
                # a matrix product over k rows may round the last bit differently from k products of one row
                np.testing.assert_allclose(g[name], w[name], rtol=1e-6, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(g[name], w[name], err_msg=name)
    assert len(got_steps) == len(want_steps) == 2 * T
    truncated = terminated = 0
    for (gd, gr, ge, g0, gn), (wd, wr, we, w0, wn) in zip(got_steps, want_steps):
        np.testing.assert_array_equal(gd, wd)
        np.testing.assert_array_equal(gr, wr)
        np.testing.assert_array_equal(g0, w0)
        assert gn == wn == E
        assert ge.keys() == we.keys()
        for i in ge:
            assert ge[i].keys() == we[i].keys()
            for k in ge[i]:
                np.testing.assert_array_equal(ge[i][k], we[i][k], err_msg=k)
            truncated += bool(we[i]["TimeLimit.truncated"])
            terminated += not bool(we[i]["TimeLimit.truncated"])
    # the rollouts hold both kinds of episode end, so both paths of the bootstrap were compared
    assert truncated >= 3 and terminated >= 3, (truncated, terminated)
    assert got_eps == want_eps and len(want_eps) == min(truncated + terminated, fast.ep_info_buffer.maxlen)


def test_carl_ppo_array_rollouts_equal_sb3s():
    venv_a, venv_b = (make_vec_env(_config([{"name": "morl.agents.carl:CaRLVecReward"}]), E, seed=0) for _ in "ab")
    it = iter((venv_a, venv_b))
    fast, slow = _pair(lambda: CaRLPPO("BetaPolicy", next(it), n_steps=T, batch_size=64, seed=0, device="cpu",
                                       policy_kwargs=NET))
    _assert_same(fast, slow)


def test_sb3_ppo_through_morl_train_takes_the_array_path_and_equals_sb3s():
    cfg = _config([{"name": "PreorderVecGate", "kwargs": {"thresholds": {"safety": 0.0}}}], agent="PPO")
    venv_a, venv_b = (make_vec_env(cfg, E, seed=0) for _ in "ab")
    cls = agent_class(cfg, venv_a)
    assert issubclass(cls, PPO) and issubclass(cls, ArrayRollouts) and cls.__name__ == "PPO"
    it = iter((venv_a, venv_b))
    fast, slow = _pair(lambda: cls("MlpPolicy", next(it), n_steps=T, batch_size=64, seed=0, device="cpu",
                                   policy_kwargs=NET))
    _assert_same(fast, slow)


def test_lexppo_array_rollouts_equal_sb3s_with_vector_values():
    cfg = _config()
    venv_a, venv_b = (make_vec_env(cfg, E, seed=0) for _ in "ab")
    it = iter((venv_a, venv_b))
    fast, slow = _pair(lambda: LexPPO("MlpPolicy", next(it), n_steps=T, batch_size=64, seed=0, device="cpu",
                                      policy_kwargs=NET))
    _assert_same(fast, slow)


def test_a_chain_with_a_wrapper_that_knows_no_array_steps_takes_sb3s_loop():
    from stable_baselines3.common.vec_env import VecNormalize

    from morl.envs.driving import make_vec

    venv = make_vec("route", E, action_type="continuous", seed=0)
    assert array_step_env(venv) and array_step_env(make_vec_env(_config(), E, seed=0))
    normalized = VecNormalize(venv)  # forwards step_arrays by __getattr__, but changes rewards in step_wait
    assert hasattr(normalized, "step_arrays") and not array_step_env(normalized)
    model = with_array_rollouts(PPO)("MlpPolicy", normalized, n_steps=8, batch_size=32, seed=0, policy_kwargs=NET)
    assert not model.uses_array_rollouts()
    model.learn(8 * E)  # SB3's loop: VecNormalize's statistics are updated
    assert normalized.ret_rms.count > 1
    # a non-array env keeps SB3's class: morl train hands SB3 PPO over unchanged
    assert agent_class(config_from_dict({"name": "t", "env": {"id": "CartPole-v1"}, "agent": {"name": "PPO"},
                                         "train": {"total_timesteps": 1}}), normalized) is PPO


def test_with_array_rollouts_classes():
    assert with_array_rollouts(PPO) is with_array_rollouts(PPO)  # one class per SB3 class
    assert issubclass(with_array_rollouts(A2C), A2C)
    assert with_array_rollouts(CaRLPPO) is CaRLPPO
    with pytest.raises(TypeError, match="OnPolicyAlgorithm"):
        with_array_rollouts(dict)

    class OwnLoop(PPO):
        def collect_rollouts(self, *args):
            return OnPolicyAlgorithm.collect_rollouts(self, *args)

    assert with_array_rollouts(OwnLoop) is OwnLoop


def test_step_infos_build_entries_when_read():
    made = []
    infos = StepInfos(3, lambda i: made.append(i) or {"i": i}, {1: {"ended": True}})
    assert len(infos) == 3 and infos[1] == {"ended": True} and made == []
    assert infos[-1] == {"i": 2} and made == [2]
    assert [info.get("i") for info in infos] == [0, None, 2] and made == [2, 0]
    infos[0] = {"x": 1}
    assert infos[:1] == [{"x": 1}]
    with pytest.raises(IndexError, match="out of range"):
        infos[3]
