"""morl/Swarm-v0: dynamics, reference densities, coverage metric, env mechanics and bad input."""

import gymnasium as gym
import numpy as np
import ot
import pytest

import morl.envs.swarm  # noqa: F401  (registers morl/Swarm-v0)
from morl.envs.swarm import (LinearDynamics, ReferenceDensity, SwarmEnv, coverage_w2, double_integrator, gmm_density,
                        greedy_transport_cost, image_density, make_density, quadrotor, single_integrator)


# --- dynamics ---------------------------------------------------------------------------------------


def test_quadrotor_matches_the_authors_model():
    dyn = quadrotor(dt=0.1)
    assert dyn.A.shape == (8, 8) and dyn.B.shape == (8, 2) and dyn.C.shape == (2, 8)
    assert dyn.A[1, 2] == pytest.approx(-0.981) and dyn.A[5, 6] == pytest.approx(0.981)
    assert dyn.B[3, 1] == pytest.approx(0.1 / 0.0075) and dyn.B[7, 0] == pytest.approx(0.1 / 0.0075)
    # output relative degree 4: C A^k B = 0 for k < 3, non-zero at k = 3
    markov = [dyn.C @ np.linalg.matrix_power(dyn.A, k) @ dyn.B for k in range(4)]
    assert all(np.allclose(mk, 0) for mk in markov[:3]) and not np.allclose(markov[3], 0)
    assert dyn.position_indices() == (0, 4)


def test_double_integrator_is_exact_zero_order_hold():
    dyn = double_integrator(dt=0.5)
    x = np.array([1.0, 2.0, 0.3, -0.4])
    u = np.array([2.0, -1.0])
    nxt = dyn.A @ x + dyn.B @ u
    # constant acceleration for dt: p' = p + v dt + a dt^2 / 2, v' = v + a dt
    expect = np.array([1 + 0.3 * 0.5 + 0.25 * 2 / 2 * 1, 2 - 0.4 * 0.5 - 0.25 / 2, 0.3 + 1.0, -0.4 - 0.5])
    np.testing.assert_allclose(nxt, expect)


@pytest.mark.parametrize("A, B, C, match", [
    (np.eye(3)[:2], np.ones((2, 1)), np.eye(2), "A must be square"),
    (np.eye(2), np.ones((3, 1)), np.eye(2), "B must have shape"),
    (np.eye(2), np.eye(2), np.eye(3), "C must have shape"),
    (np.eye(2) * 1.1, np.eye(2), np.eye(2), "unstable"),
    (np.eye(2), np.array([[1.0], [0.0]]), np.eye(2), "not controllable"),
    ([[1.0, np.nan], [0.0, 1.0]], np.eye(2), np.eye(2), "non-finite"),
    ("abc", np.eye(2), np.eye(2), "A"),
])
def test_malformed_or_unstable_dynamics_raise(A, B, C, match):
    with pytest.raises(ValueError, match=match):
        LinearDynamics(A, B, C)


def test_unstable_dynamics_can_be_allowed_explicitly():
    assert LinearDynamics(np.eye(2) * 1.1, np.eye(2), np.eye(2), allow_unstable=True).n_states == 2


# --- densities --------------------------------------------------------------------------------------


def test_density_bad_input():
    with pytest.raises(ValueError, match="no mass"):
        ReferenceDensity(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"non-negative, got weights\[1\]"):
        ReferenceDensity(np.zeros((3, 2)), np.array([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="shape"):
        ReferenceDensity(np.zeros((3, 2)), np.ones(4))
    with pytest.raises(ValueError, match="no mass"):
        image_density(np.zeros((4, 4)), 10)
    with pytest.raises(ValueError, match="unknown density"):
        make_density("nope")


def test_density_weights_are_normalised_float64():
    d = ReferenceDensity(np.zeros((4, 2)), np.array([1, 1, 2, 0]))
    assert d.weights.dtype == np.float64 and d.weights.sum() == 1.0 and d.weights[2] == 0.5


def test_image_density_samples_lie_in_the_bright_pixel():
    img = np.zeros((4, 4))
    img[0, 3] = 1.0  # top-right pixel
    d = image_density(img, 200, domain=(0.0, 4.0), rng=0)
    assert np.all(d.samples[:, 0] >= 3.0) and np.all(d.samples[:, 1] >= 3.0)


def test_gmm_samples_follow_the_mixture_and_stay_in_the_domain():
    d = gmm_density([[20.0, 20.0], [80.0, 70.0]], np.stack([np.eye(2) * 4.0] * 2), [0.25, 0.75], 4000, rng=1)
    assert np.all((d.samples >= 0) & (d.samples <= 100))
    near_second = np.mean(np.linalg.norm(d.samples - [80.0, 70.0], axis=1) < 15)
    assert near_second == pytest.approx(0.75, abs=0.03)


def test_shipped_density_images_load():
    for name in ("ring", "cross"):
        d = make_density(f"image:{name}", n_samples=500)
        assert d.n_samples == 500 and np.all((d.samples >= 0) & (d.samples <= 100))


# --- metric -----------------------------------------------------------------------------------------


def test_coverage_w2_hand_cases():
    # a translation by (3, 4) of a uniform measure costs exactly 5
    pts = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert coverage_w2(pts, pts + [3.0, 4.0], method="exact") == pytest.approx(5.0)
    # one point against two samples with weights 1/4, 3/4 at distances 2 and 0: sqrt(1/4 * 4) = 1
    assert coverage_w2([[0.0, 0.0]], [[2.0, 0.0], [0.0, 0.0]], [1, 3], method="exact") == pytest.approx(1.0)
    sliced = coverage_w2(pts, pts + [3.0, 4.0], method="sliced", n_projections=500)
    assert 0 < sliced <= 5.0 + 1e-9  # sliced W2 is a lower bound of W2
    with pytest.raises(ValueError, match="method"):
        coverage_w2(pts, pts, method="foo")


def _greedy_reference(points, alpha, samples, remaining):
    total = 0.0
    for p in points:
        d2 = ((samples - p) ** 2).sum(axis=1)
        need = alpha
        for j in np.argsort(np.where(remaining > 0, d2, np.inf), kind="stable"):
            if need <= 0 or remaining[j] <= 0:
                break
            take = min(need, remaining[j])
            remaining[j] -= take
            need -= take
            total += take * d2[j]
    return total


def test_greedy_transport_cost_matches_reference_and_bounds_w2():
    rng = np.random.default_rng(3)
    samples = rng.random((60, 2)) * 10
    points = rng.random((20, 2)) * 10
    rem_a = np.full(60, 1 / 60)
    rem_b = rem_a.copy()
    cost = greedy_transport_cost(points, 1 / 20, samples, rem_a)
    assert cost == pytest.approx(_greedy_reference(points, 1 / 20, samples, rem_b), rel=1e-12)
    np.testing.assert_allclose(rem_a, rem_b, atol=1e-15)
    assert rem_a.sum() == pytest.approx(0.0, abs=1e-12)
    exact = ot.emd2(np.full(20, 1 / 20), np.full(60, 1 / 60), ot.dist(points, samples))
    assert cost >= exact - 1e-12  # a feasible plan costs at least the optimum


# --- environment ------------------------------------------------------------------------------------


def test_registered_env_steps_and_reports_w2():
    env = gym.make("morl/Swarm-v0", n_agents=3, dynamics="double_integrator", n_samples=200, max_steps=5,
                   disable_env_checker=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 4) and env.action_space.shape == (3, 2)
    task = env.unwrapped.task
    u = np.ones((3, 2))
    for t in range(5):
        x_prev = obs
        obs, reward, terminated, truncated, info = env.step(u)
        np.testing.assert_allclose(obs, x_prev @ task.dynamics.A.T + u @ task.dynamics.B.T)
        assert reward.shape == (2,) and reward.dtype == np.float32 and reward[1] == pytest.approx(-0.1 * 6)
        assert terminated == (t == 4) and not truncated
    assert info["W2"] == pytest.approx(coverage_w2(env.unwrapped.trajectory()[1:].reshape(-1, 2),
                                                   task.density.samples, task.density.weights, method="exact"))
    assert env.unwrapped.objectives == ("coverage", "effort")


def test_env_reset_is_seeded_and_accepts_positions():
    env = SwarmEnv(n_agents=4, n_samples=100, max_steps=3)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(a, b)
    pos = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    obs, _ = env.reset(options={"positions": pos})
    np.testing.assert_array_equal(obs[:, [0, 4]], pos)
    assert np.all(obs[:, [1, 2, 3, 5, 6, 7]] == 0)


def test_adjacency_by_radius():
    env = SwarmEnv(n_agents=3, n_samples=50, comm_radius=5.0)
    adj = env.adjacency(np.array([[0.0, 0.0], [4.0, 0.0], [20.0, 0.0]]))
    np.testing.assert_array_equal(adj, [[False, True, False], [True, False, False], [False, False, False]])


def test_episode_coverage_return_bounds_w2_squared():
    env = SwarmEnv(n_agents=2, dynamics="single_integrator", n_samples=300, max_steps=20, w2_method="exact")
    env.reset(seed=1)
    total = 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, r, terminated, _, info = env.step(rng.normal(size=(2, 2)) * 20)
        total += float(r[0])
    assert terminated and -total >= info["W2"] ** 2 * (1 - 1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_agents": 0}, "n_agents"),
    ({"max_steps": 0}, "max_steps"),
    ({"comm_radius": -1.0}, "comm_radius"),
    ({"dynamics": "rocket"}, "unknown dynamics"),
    ({"dynamics": {"A": np.eye(2) * 2, "B": np.eye(2), "C": np.eye(2)}}, "unstable"),
    ({"density": {"samples": np.zeros((2, 2)), "weights": [-1.0, 2.0]}}, "non-negative"),
])
def test_env_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SwarmEnv(**{"n_samples": 50, **kwargs})


def test_env_rejects_bad_actions():
    env = SwarmEnv(n_agents=2, dynamics="single_integrator", n_samples=50)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full((2, 2), np.nan))


def test_single_integrator_dynamics():
    dyn = single_integrator(0.2)
    np.testing.assert_allclose(dyn.A @ [1.0, 1.0] + dyn.B @ [5.0, 0.0], [2.0, 1.0])
