def test_random_policy_rates_cover_every_scenario_and_action_type(load_script):
    rows = load_script("bench_driving").random_policy_rates(12)
    assert [(s, a) for s, a, _ in rows] == [("highway", "discrete"), ("highway", "continuous"),
                                           ("route", "discrete"), ("route", "continuous")]
    for _, _, rates in rows:
        assert rates.shape == (3,) and ((rates >= 0) & (rates <= 1)).all()
        # every first episode ended: random driving ends in a crash, off the road or (rarely) at the goal
        assert 0.0 < rates.sum() <= 1.0 + 1e-9
    # random continuous steering leaves the road more often than random meta-actions
    assert rows[1][2][1] > rows[0][2][1] and rows[3][2][1] > rows[2][2][1]
