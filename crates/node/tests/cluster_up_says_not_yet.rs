//! `ballast cluster up` is the README's quickstart command. Until the
//! cluster exists it must say so and fail, never pretend to have started.

use std::process::Command;

#[test]
fn cluster_up_fails_and_says_the_cluster_is_coming() {
    let output = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["cluster", "up"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("coming"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert!(output.stdout.is_empty());
}
