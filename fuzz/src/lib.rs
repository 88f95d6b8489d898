//! Fuzz target bodies for dsync, shared by the libFuzzer entry points in `fuzz_targets/` and by the
//! stable corpus test in `tests/corpus.rs`.
//!
//! Each body takes the fuzzer's raw bytes and panics exactly when it finds a bug: a panic inside the code
//! under test, or a broken property the body asserts. Bad input itself must end in a typed error.
//!
//! | target | what it feeds | what it asserts |
//! |---|---|---|
//! | [`wire_decode`] | bytes to `dsync_core::wire::decode` under a size limit | typed errors; decoded messages round-trip |
//! | [`tcp_frames`] | byte streams to the TCP frame decoder and both handshake sides | chunking-independent framing; no forged handshake succeeds |
//! | [`core_inputs`] | a cluster of core `Node`s to arbitrary inputs from arbitrary peers | no panic; local invariants after every input |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod core_inputs;
pub mod seeds;
#[cfg(feature = "tcp")]
pub mod tcp_frames;
pub mod wire_decode;
