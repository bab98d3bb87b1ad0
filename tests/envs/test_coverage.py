"""Tests of the SubRL grid worlds: submodularity of every F, telescoping gains, kernels vs references."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import morl.envs.coverage  # noqa: F401  (registers the ids)
from morl.envs.coverage import ENV_IDS, SCENARIOS, CoverageEnv, CoverageVecEnv, greedy_rollout, make_map, make_objective, make_vec
from morl.envs.coverage.maps import ACTIONS, load_gorilla_density

# Small instances of every objective (the 30 x 30 design covariance is built once per module).
SMALL = {
    "coverage": dict(objective="coverage", rows=6, cols=7),
    "bimodal": dict(objective="weighted_coverage", density="bimodal", rows=6, cols=7),
    "gorilla": dict(objective="weighted_coverage", density="gorilla", rows=6, cols=7, block=3),
    "items": dict(objective="item_collection", rows=6, cols=7, item_counts=(5, 4, 6), item_demands=(2, 1, 3)),
    "design": dict(objective="experiment_design", rows=6, cols=7),
    "two_rooms": dict(objective="coverage", layout="two_rooms", rows=7, cols=14),
}


def _objective(kw):
    kw = dict(kw)
    grid = make_map(kw.pop("rows"), kw.pop("cols"), kw.pop("layout", "open"), kw.pop("block", 2))
    return make_objective(kw.pop("objective"), grid, **kw)


OBJS = {name: _objective(kw) for name, kw in SMALL.items()}


# --- plain reference implementations (no numba, no incremental state) ------------------------------

def ref_transition(rows, cols, walls, s, a):
    r, c = divmod(s, cols)
    nr, nc = r + ACTIONS[a][0], c + ACTIONS[a][1]
    if not (0 <= nr < rows and 0 <= nc < cols) or walls[nr * cols + nc]:
        return s
    return nr * cols + nc


def ref_value(obj, cells):
    """F(S) written from the definitions, independent of Objective.value."""
    cells = set(int(c) for c in cells)
    g = obj.grid
    if obj.kind == "coverage":
        blk = int(np.sqrt(g.footprint.shape[1]))
        cov = set()
        for s in cells:
            r, c = divmod(s, g.cols)
            for dr in range(blk):
                for dc in range(blk):
                    if r + dr < g.rows and c + dc < g.cols and not g.walls[(r + dr) * g.cols + c + dc]:
                        cov.add((r + dr) * g.cols + c + dc)
        return sum(obj.weights[n] for n in cov)
    if obj.kind == "items":
        return sum(min(sum(1 for s in cells if obj.item_type[s] == k), d) for k, d in enumerate(obj.demand))
    idx = sorted(cells)
    if not idx:
        return 0.0
    k = obj.cov[np.ix_(idx, idx)]
    return 0.5 * np.log(np.linalg.det(np.eye(len(idx)) + k / obj.noise))


# --- submodularity -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OBJS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_monotone_and_diminishing_returns(name, data):
    obj = OBJS[name]
    free = [int(c) for c in np.flatnonzero(~obj.grid.walls)]
    a = set(data.draw(st.lists(st.sampled_from(free), max_size=8)))
    b = a | set(data.draw(st.lists(st.sampled_from(free), max_size=8)))  # A subset of B
    s = data.draw(st.sampled_from(free))
    fa, fb = obj.value(a), obj.value(b)
    assert fb >= fa - 1e-9  # monotone
    gain_a, gain_b = obj.value(a | {s}) - fa, obj.value(b | {s}) - fb
    assert gain_a >= gain_b - 1e-9  # diminishing returns: F(s | A) >= F(s | B)
    assert np.isclose(fa, ref_value(obj, a), atol=1e-8)  # Objective.value matches the definition


# --- env dynamics, gains and kernels -------------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_kernels_match_reference_and_telescope(name):
    kw = SMALL[name]
    horizon = 25
    env = CoverageVecEnv(num_envs=6, horizon=horizon, start="random", seed=3, **kw)
    ref_env = CoverageVecEnv(num_envs=6, horizon=horizon, start="random", seed=3, incremental=False, **kw)
    obj, g = env.obj, env.grid
    env.reset(), ref_env.reset()
    pos = env.pos.copy()
    f0 = np.array([ref_value(obj, {p}) for p in pos])
    assert np.allclose(env.value, f0)
    visited = [{int(p)} for p in pos]
    total = np.zeros(6)
    rng = np.random.default_rng(0)
    for _ in range(horizon):
        a = rng.integers(0, 5, size=6)
        gains, modular = env.step_arrays(a)
        gains, modular = gains.copy(), modular.copy()
        rgains, _ = ref_env.step_arrays(a)
        for b in range(6):
            nxt = ref_transition(g.rows, g.cols, g.walls, int(pos[b]), int(a[b]))
            assert env.pos[b] == nxt
            before = ref_value(obj, visited[b])
            visited[b].add(nxt)
            assert np.isclose(gains[b], ref_value(obj, visited[b]) - before, atol=1e-7)
            assert np.isclose(modular[b], ref_value(obj, {nxt}) if obj.kind != "items"
                              else float(obj.item_type[nxt] >= 0), atol=1e-9)
        assert np.allclose(rgains, gains, atol=1e-7)  # incremental == recompute-from-set mode
        pos = env.pos.copy()
        total += gains
    final = np.array([ref_value(obj, v) for v in visited])
    assert np.allclose(total, final - f0, atol=1e-6)  # sum of marginal gains = F(tau) - F({s0})
    assert np.allclose(env.value, final, atol=1e-6)


def test_vecenv_autoreset_infos_and_obs():
    env = CoverageVecEnv(num_envs=3, rows=5, cols=8, horizon=4, start=(0, 0))
    obs = env.reset()
    assert obs["cell"].shape == (3,) and obs["visited"].shape == (3, 40) and obs["visited"].sum() == 3
    assert env.observation_space.contains({k: v[0] for k, v in obs.items()})
    ret = np.zeros(3)
    for t in range(4):
        obs, rew, done, infos = env.step(np.full(3, 1))
        ret += rew
    assert done.all()
    assert np.allclose(ret, np.array([i["F"] for i in infos]) - 4)  # F0 = the 4 cells of the start block
    assert np.allclose(ret, 2 * 4)  # moving right along the top row covers 2 new cells a step
    assert infos[0]["terminal_observation"]["t"] == 4 and obs["t"].tolist() == [0, 0, 0]
    assert obs["visited"].sum() == 3  # reset after the horizon


def test_registered_ids_and_single_env():
    for env_id, scenario in ENV_IDS.items():
        assert gym.spec(env_id).kwargs == SCENARIOS[scenario]
    env = gym.make("morl/TwoRooms-v0", disable_env_checker=True)
    obs, info = env.reset(seed=0)
    total = 0.0
    for t in range(env.unwrapped.horizon):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert r.shape == (1,) and r.dtype == np.float32
        total += float(r[0])
    assert trunc and np.isclose(total, info["F"] - info["F0"])
    assert env.unwrapped.objectives == ("coverage",)


def test_two_rooms_walls_block_moves():
    g = make_map(7, 14, "two_rooms")
    assert g.walls.reshape(7, 14)[0, 4:10].all() and not g.walls.reshape(7, 14)[2:4, :].any()
    for s in np.flatnonzero(~g.walls):
        assert not g.walls[g.transitions[s]].any()  # never enters a wall
    assert (g.footprint[g.walls] == -1).all()


def test_greedy_reaches_coverage_bound():
    obj = make_objective("coverage", make_map(12, 12))
    f, traj = greedy_rollout(obj, 14, horizon=20)
    assert len(traj) == 21 and f == 4 + 2 * 20  # each move covers at most 2 new cells of a 2 x 2 block


def test_gorilla_asset_shape():
    d = load_gorilla_density(30, 30)
    assert d.shape == (900,) and d.min() > 0 and d.max() <= 1.0 + 1e-12
    assert load_gorilla_density(7, 9).shape == (63,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rows=0), "rows"),
    (dict(cols=-2), "cols"),
    (dict(horizon=0), "horizon"),
    (dict(objective="entropy"), "unknown objective 'entropy'"),
    (dict(objective="weighted_coverage", rows=5, cols=5, density=np.ones((4, 5))), "density has shape"),
    (dict(objective="weighted_coverage", density="volcano"), "unknown density"),
    (dict(layout="maze"), "unknown layout"),
    (dict(rows=5, cols=5, start=(7, 0)), "outside"),
    (dict(objective="item_collection", rows=2, cols=2), "item counts"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoverageVecEnv(**kwargs)


def test_bad_action_and_past_horizon():
    env = CoverageVecEnv(num_envs=2, rows=4, cols=4, horizon=1)
    with pytest.raises(ValueError, match="actions"):
        env.step_arrays(np.array([0, 7]))
    env.step_arrays(np.array([0, 1]))
    with pytest.raises(RuntimeError, match="reset"):
        env.step_arrays(np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown scenario"):
        make_vec("ocean")
    assert isinstance(CoverageEnv(rows=3, cols=3, horizon=2).reset()[0], dict)


def test_point_coverage_reward_is_marginal_area():
    env = gym.make("morl/PointCoverage-v0", disable_env_checker=True, horizon=60)
    obs, info = env.reset(seed=1)
    from morl.envs.coverage.continuous import MarginalCoverageReward

    wrapper = env
    while not isinstance(wrapper, MarginalCoverageReward):
        wrapper = wrapper.env
    assert obs.shape == env.observation_space.shape and np.isclose(info["F0"], 16 * 0.25)  # 2 m patch, 0.5 m cells
    total, rng = 0.0, np.random.default_rng(0)
    for _ in range(60):
        xy_before = wrapper.xy_fn(wrapper.env)
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 2))
        total += r
        assert r >= 0 and np.isclose(r, info["vector_reward"][0])
        if term or trunc:
            break
    assert np.isclose(total, info["F"] - info["F0"])  # rewards telescope to the covered area
    assert np.isclose(info["F"], wrapper.mask.sum() * 0.25) and np.linalg.norm(xy_before) > 0


def test_continuous_wrapper_bad_input():
    from morl.envs.coverage.continuous import MarginalCoverageReward, PointRobotEnv

    with pytest.raises(ValueError, match="extent"):
        MarginalCoverageReward(PointRobotEnv(), extent=-1.0)
    with pytest.raises(ValueError, match="coarse"):
        MarginalCoverageReward(PointRobotEnv(), extent=10.0, cell=0.5, coarse=7)


@pytest.mark.parametrize("name", ["gorilla", "items", "design", "two_rooms"])
def test_planners_return_feasible_paths(name):
    from morl.envs.coverage import beam_plan, oracle_plan

    obj = OBJS[name]
    start = int(np.flatnonzero(~obj.grid.walls)[0])
    for value, path in (greedy_rollout(obj, start, 10, lookahead=2), beam_plan(obj, start, 10, width=8)):
        assert len(path) == 11 and path[0] == start
        assert all(path[i + 1] in obj.grid.transitions[path[i]] for i in range(10))  # follows the dynamics
        assert np.isclose(value, ref_value(obj, path))
    best = oracle_plan(obj, start, 10, lookahead=2, width=8)
    assert best[0] == max(greedy_rollout(obj, start, 10, 2)[0], beam_plan(obj, start, 10, 8)[0])
