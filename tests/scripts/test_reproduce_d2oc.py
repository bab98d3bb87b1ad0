import json


def test_reproduce_d2oc_small_run_writes_table_and_radius_rows(tmp_path, load_script):
    module = load_script("reproduce_d2oc")
    out = tmp_path / "d2oc"
    results = module.main(["--seeds", "2", "--samples", "200", "--agents", "3", "--steps", "20", "--checkpoints", "2",
                           "--radii", "1000", "--gap-seeds", "3", "--out", str(out)])
    text = (out / "table.md").read_text()
    assert "D2OC r=1000" in text and "r = 1000 m: +0.0 %" in text
    saved = json.loads((out / "results.json").read_text())
    for dens, per in results["densities"].items():
        # a radius past the map's diagonal keeps every agent in contact: decentralised equals centralised
        assert per["D2OC r=1000"]["final_w2"] == per["D2OC centralised"]["final_w2"], dens
        assert saved["densities"][dens]["D2OC"]["final_w2"] == per["D2OC"]["final_w2"]
        assert len(per["SMC"]["final_w2"]) == 2
    assert len(list(out.glob("coverage_*.png"))) == 3
    # the many-start gap estimate: both decentralised variants, a point inside its interval
    assert "over 3 starts" in text and "D2OC predicted" in text and "D2OC predicted+starts" in text
    for dens, gaps in results["gaps"].items():
        for name, (gap, lo, hi) in gaps.items():
            assert lo <= gap <= hi, (dens, name)
        assert len(results["densities"][dens]["D2OC predicted"]["gap_seeds_w2"]) == 3
