//! The `dsync-sim` binary (feature `cli`): help, version and command-line errors, and `replay` reproducing
//! `run`'s verdict and exit code.

use std::process::Command;

fn sim_full(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dsync-sim")).args(args).output().expect("runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exit code"), text(&out.stdout), text(&out.stderr))
}

#[test]
fn help_exits_0_and_lists_the_subcommands() {
    let (code, out, _) = sim_full(&["--help"]);
    assert_eq!(code, 0, "{out}");
    for cmd in ["run", "replay", "bugs"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing:\n{out}");
    }
    let (code, out, _) = sim_full(&["run", "--help"]);
    assert_eq!(code, 0, "{out}");
    for flag in [
        "--nodes",
        "--seeds",
        "--jobs",
        "--check-determinism",
        "--plant-bug",
        "--expect-violation",
        "--drift-beyond-bound",
        "--wire-every",
        "--keep-going",
        "[default: 0..100]",
        "[default: 4]",
    ] {
        assert!(out.contains(flag), "{flag} missing:\n{out}");
    }
    let (code, out, _) = sim_full(&["replay", "--help"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--shrink") && out.contains("--quiet") && out.contains("--seed"), "{out}");
}

#[test]
fn version_prints_the_crate_version() {
    let (code, out, _) = sim_full(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("dsync-sim {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_bad_command_line_exits_2_with_the_reason() {
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--no-such-flag"], "--no-such-flag"),
        (&["run", "--seeds", "x..y"], "bad range"),
        (&["run", "--nodes", "0..=70"], "--nodes must be within 1..=64"),
        (&["run", "--plant-bug", "no-such-bug"], "no-such-bug"),
        (&["run", "--jobs"], "--jobs"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, reason) in cases {
        let (code, out, err) = sim_full(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    // No subcommand: the help, on stderr, and exit 2.
    let (code, _, err) = sim_full(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("replay"), "{err}");
}

#[test]
fn bugs_lists_every_planted_bug() {
    let (code, out) = sim(&["bugs"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = dsync_sim::PlantedBug::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), names);
}

fn sim(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dsync-sim")).args(args).output().expect("runs");
    (out.status.code().expect("exit code"), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// For each seed and set of flags: `run` on that one seed and `replay` (and the `repro:` line `run` prints,
/// run as printed) agree on the verdict line and the exit code.
#[test]
fn run_and_replay_agree_on_verdict_and_exit_code() {
    let flag_sets: [&[&str]; 4] = [
        &[],
        &["--drift-beyond-bound"],
        &["--drift-beyond-bound", "--plant-bug", "no-locker-expiry"],
        &["--plant-bug", "no-drift-margin", "--wire-every", "1"],
    ];
    let mut excused = 0;
    for flags in flag_sets {
        for seed in [1u64, 5, 7] {
            let seeds = format!("{seed}..{}", seed + 1);
            let mut run_args = vec!["run", "--nodes", "3..=5", "--seeds", &seeds];
            run_args.extend_from_slice(flags);
            let (run_code, run_out) = sim(&run_args);
            let s = seed.to_string();
            let mut replay_args = vec!["replay", "--quiet", "--nodes", "3..=5", "--seed", &s];
            replay_args.extend_from_slice(flags);
            let (replay_code, replay_out) = sim(&replay_args);
            assert_eq!(run_code, replay_code, "seed {seed} {flags:?}:\n{run_out}\n---\n{replay_out}");
            let verdict = replay_out.lines().find_map(|l| l.strip_prefix("verdict: ")).expect("a verdict line");
            match run_out.lines().find(|l| l.starts_with("VIOLATION") || l.starts_with("ASSUMPTION")) {
                Some(line) => {
                    assert_eq!(line, verdict, "seed {seed} {flags:?}");
                    excused += usize::from(line.starts_with("ASSUMPTION"));
                    let repro = run_out.lines().find_map(|l| l.trim().strip_prefix("repro: dsync-sim "));
                    let mut args: Vec<&str> = repro.expect("a repro line").split(' ').collect();
                    args.push("--quiet");
                    let (code, out) = sim(&args);
                    assert_eq!(code, run_code, "repro of seed {seed} {flags:?}");
                    assert!(out.contains(&format!("verdict: {line}")), "repro of seed {seed} {flags:?}");
                }
                None => assert!(verdict.starts_with("PASS"), "seed {seed} {flags:?}: {verdict}"),
            }
        }
    }
    assert!(excused > 0, "the seeds should include an excused drift run");
}
