//! Planted bugs: switches that each disable one safety mechanism, so that `dsync-sim` can prove its
//! checkers fail when the protocol is broken.
//!
//! Why the field is always there but honoured only under a feature: a Cargo feature is unified across a
//! workspace build, so a `#[cfg]`-gated `Config` field would change `Config`'s shape for every crate built
//! alongside the simulator (struct literals and exhaustive patterns would compile in one build and not in
//! another). A `--cfg` switch would avoid unification but cannot be set for one dependency, so the
//! simulator could only get it through global `RUSTFLAGS` that reach production crates too. Instead
//! [`PlantedBug`] and [`crate::Config::planted_bug`] exist in every build; `Config::bug` is a
//! constant `false` unless the `planted-bugs` feature is on, so a production build compiles every switch
//! away, and [`crate::Config::validate`] refuses a planted bug the build cannot honour instead of
//! ignoring it silently.

/// Safety mechanisms that `dsync-sim` switches off one at a time to prove its checkers can fail.
///
/// The type and [`crate::Config::planted_bug`] exist in every build; only a build with the `planted-bugs` feature
/// honours the field: elsewhere [`crate::Config::validate`] refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PlantedBug {
    /// Write quorum one smaller than the rule (two writers can meet only in disjoint quorums).
    WriteQuorumTooSmall,
    /// Read quorum one smaller than the rule (a reader and a writer can coexist).
    ReadQuorumTooSmall,
    /// A restarted node grants at once, while grants it gave before the crash may be believed.
    NoRestartQuarantine,
    /// Lockers grant write proposals that do not exceed their fencing high-water mark.
    NoFencingCheck,
    /// A restarted node without a durable floor skips recovering the fencing floor from its peers.
    NoFloorRecovery,
    /// Holder validity counted from when the quorum's replies arrived, not from when the round was sent.
    ValidityFromReceive,
    /// Holder validity of `lease·(1+ρ)` instead of `lease·(1−ρ)`: it trusts its clock not to run slow.
    NoDriftMargin,
    /// Lockers never expire grants (a dead holder's locks stay forever).
    NoLockerExpiry,
    /// The coordinator ignores grants that arrive after the attempt gave up (they leak until expiry).
    KeepLateGrants,
    /// A bootstrapping node treats a peer's `History` answer like `Fresh`.
    BootstrapIgnoresHistory,
    /// A bootstrapping node boots once a write quorum of peers (not all) answered fresh, ignoring the rest.
    BootstrapQuorumOnly,
    /// A booted node answers `BootedWithYou` without checking the asker's incarnation.
    VouchAnyIncarnation,
    /// A restarted node's sweep releases every grant it owns, its own live locks' included.
    ReleaseOwnLiveGrants,
    /// A rejoining node ends its quarantine without reinstalling the grants its peers' holders count.
    RejoinWithoutReinstall,
    /// A node answering a rejoin keeps counting the rejoining node's replies to rounds in progress (which
    /// may be its dead incarnation's grants).
    RejoinCountsStaleReplies,
    /// A rejoining node ends its quarantine once a write quorum (not every peer) answered.
    RejoinOnQuorum,
    /// The coordinator ignores `Revoked`: a force-unlocked holder learns only at its next refresh.
    RevocationIgnored,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 17] = [
        PlantedBug::WriteQuorumTooSmall,
        PlantedBug::ReadQuorumTooSmall,
        PlantedBug::NoRestartQuarantine,
        PlantedBug::NoFencingCheck,
        PlantedBug::NoFloorRecovery,
        PlantedBug::ValidityFromReceive,
        PlantedBug::NoDriftMargin,
        PlantedBug::NoLockerExpiry,
        PlantedBug::KeepLateGrants,
        PlantedBug::BootstrapIgnoresHistory,
        PlantedBug::BootstrapQuorumOnly,
        PlantedBug::VouchAnyIncarnation,
        PlantedBug::ReleaseOwnLiveGrants,
        PlantedBug::RejoinWithoutReinstall,
        PlantedBug::RejoinCountsStaleReplies,
        PlantedBug::RejoinOnQuorum,
        PlantedBug::RevocationIgnored,
    ];

    /// The command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::WriteQuorumTooSmall => "write-quorum-too-small",
            PlantedBug::ReadQuorumTooSmall => "read-quorum-too-small",
            PlantedBug::NoRestartQuarantine => "no-restart-quarantine",
            PlantedBug::NoFencingCheck => "no-fencing-check",
            PlantedBug::NoFloorRecovery => "no-floor-recovery",
            PlantedBug::ValidityFromReceive => "validity-from-receive",
            PlantedBug::NoDriftMargin => "no-drift-margin",
            PlantedBug::NoLockerExpiry => "no-locker-expiry",
            PlantedBug::KeepLateGrants => "keep-late-grants",
            PlantedBug::BootstrapIgnoresHistory => "bootstrap-ignores-history",
            PlantedBug::BootstrapQuorumOnly => "bootstrap-quorum-only",
            PlantedBug::VouchAnyIncarnation => "vouch-any-incarnation",
            PlantedBug::ReleaseOwnLiveGrants => "release-own-live-grants",
            PlantedBug::RejoinWithoutReinstall => "rejoin-without-reinstall",
            PlantedBug::RejoinCountsStaleReplies => "rejoin-counts-stale-replies",
            PlantedBug::RejoinOnQuorum => "rejoin-on-quorum",
            PlantedBug::RevocationIgnored => "revocation-ignored",
        }
    }

    /// The bug with this command-line name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}
