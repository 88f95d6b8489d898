//! `dsync-node` as a new user meets it: help, and what it says when started wrongly.

use std::net::TcpListener;
use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsync-node")).args(args).env("RUST_LOG", "warn").output().expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_exits_zero_and_explains_the_safe_defaults() {
    let o = node(&["--help"]);
    assert!(o.status.success(), "{}", text(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--state-dir",
        "--bootstrap",
        "--secret-file",
        "Safe defaults",
        "quarantine",
        "[default: 30000]",
        "--admin-addr",
        "--admin-token-file",
        "/ready",
    ] {
        assert!(help.contains(needle), "--help does not mention {needle:?}:\n{help}");
    }
}

#[test]
fn version_exits_zero() {
    let o = node(&["--version"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("dsync-node "), "{}", text(&o));
}

#[test]
fn a_bad_command_line_exits_two_with_the_reason() {
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1", "--secret", "s", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--no-such-flag"), "{}", text(&o));
    let o = node(&["--id", "zero", "--peers", "127.0.0.1:1", "--secret", "s"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--id"), "{}", text(&o));
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1,localhost", "--secret", "s"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("localhost"), "{}", text(&o));
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("secret"), "{}", text(&o));
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1", "--secret", "s", "--state-dir", "/tmp/x", "--bootstrap"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_misconfigured_start_exits_one_naming_what_is_wrong() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();

    let o = node(&["--id", "0", "--peers", &format!("{addr},{free}"), "--secret", "s", "--bootstrap"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&addr), "the address in use is not named: {}", text(&o));

    let o = node(&["--id", "0", "--peers", &format!("{free},{free}"), "--secret", "s", "--bootstrap"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("twice"), "{}", text(&o));

    let file = std::env::temp_dir().join(format!("dsync-cli-test-{}", std::process::id()));
    std::fs::write(&file, "a file, not a directory").unwrap();
    let dir = file.join("state");
    let o = node(&["--id", "0", "--peers", &free, "--secret", "s", "--state-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&*file.display().to_string()), "the path is not named: {}", text(&o));
    std::fs::remove_file(&file).unwrap();

    let o = node(&["--id", "0", "--peers", &free, "--secret", "s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("state directory"), "a lone node without state must be told: {}", text(&o));
}

#[test]
fn host_names_in_peers_are_resolved_at_start_and_an_unresolvable_one_exits_two_naming_it() {
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1,no-such-host.invalid:7000", "--secret", "s", "--bootstrap"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("entry 1 (no-such-host.invalid:7000)"), "the entry is named: {}", text(&o));
    assert!(!text(&o).contains("listening"), "refused before binding: {}", text(&o));

    // A name that resolves is used like its address: listed twice under two spellings, it is a duplicate.
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let by_name = format!("localhost:{}", free.port());
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&by_name).unwrap().next().unwrap();
    if resolved == free {
        let o = node(&["--id", "0", "--peers", &format!("{free},{by_name}"), "--secret", "s", "--bootstrap"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("twice"), "{}", text(&o));
    }
    let o = node(&["--id", "0", "--peers", "127.0.0.1:1,localhost", "--secret", "s"]);
    assert_eq!(o.status.code(), Some(2), "a name needs a port: {}", text(&o));
}
