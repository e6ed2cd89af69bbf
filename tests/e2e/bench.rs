//! `tio bench` runs its scenarios against its own loopback server and reports every
//! field the JSON format promises (the figures themselves are for the README, not here).

use crate::support::run_tio;

#[test]
fn the_bench_reports_each_scenario_as_one_json_object() {
    let (status, stdout, stderr) = run_tio(
        &[
            "bench",
            "--scenario",
            "publish-unary,catch-up,console-overview",
            "--duration",
            "1",
            "--publishers",
            "2",
            "--catch-up-updates",
            "50",
            "--console-entries",
            "300",
            "--json",
        ],
        &[],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 4, "the transport floor first, then each scenario asked for: {stdout}");
    for (line, scenario) in lines.iter().zip(["transport-floor", "publish-unary", "catch-up", "console-overview"]) {
        assert_eq!(line["scenario"], scenario);
        for field in ["ops", "seconds", "ops_per_s", "of_floor", "p50_us", "p99_us", "p999_us", "missing", "errors"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert!(line["ops"].as_u64().unwrap() > 0, "{line}");
        assert_eq!(line["errors"], 0, "{line}");
        assert_eq!(line["missing"], 0, "{line}");
    }
    assert!(lines[0]["of_floor"].is_null(), "the floor is not a share of itself");
    let share = lines[1]["of_floor"].as_f64().expect("a throughput is shown as a share of the floor");
    let expected = lines[1]["ops_per_s"].as_f64().unwrap() / lines[0]["ops_per_s"].as_f64().unwrap();
    assert!((share - expected).abs() < 0.01, "{share} is ops/s over the floor's ({expected})");
    assert_eq!(lines[2]["ops"], 50, "catch-up replays every stored update");
    assert!(lines[3]["of_floor"].is_null(), "a page's latency is no share of a throughput");
    let (status, _, stderr) = run_tio(&["bench", "--scenario", "nonsense"], &[]);
    assert!(!status.success() && stderr.contains("expected one of transport-floor, publish-unary"), "{stderr}");
}
