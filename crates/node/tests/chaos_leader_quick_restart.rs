//! One chaos scenario in every test run: the leader SIGKILLed and started
//! again at once, over and over, under a checked workload of real RESP
//! clients (the run that first showed stale reads after a restart). The
//! full set is `cargo run -p ballast-chaos --release -- standard`.

use ballast_chaos::run::{run, Options};
use ballast_chaos::scenario;
use ballast_chaos::workload::Shape;
use std::time::Duration;

#[test]
fn leader_killed_and_restarted_at_once_keeps_the_history_linearizable() {
    let out = tempfile::tempdir().expect("tempdir");
    let s = scenario::find("leader-quick-restart").expect("scenario");
    let opts = Options {
        bin: env!("CARGO_BIN_EXE_ballast").into(),
        preset: "durable".into(),
        duration: Duration::from_secs(12),
        out: out.path().to_path_buf(),
        seed: 7,
        planted: None,
        shape: Shape::default(),
    };
    let result = run(&s, &opts, |line| eprintln!("{line}")).expect("run");
    println!("{}", result.summary);
    let kills = result
        .faults
        .iter()
        .filter(|f| f.what.starts_with("kill leader"))
        .count();
    assert!(kills >= 2, "the leader was killed {kills} times");
    assert!(
        result.checks.operations > 500,
        "too few operations to mean much"
    );
    assert!(result.checks.passed(), "{}", result.summary);
}
