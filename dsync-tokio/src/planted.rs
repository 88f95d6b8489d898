//! Planted bugs in the driver and the state directory: switches that each break one thing this crate
//! does for safety, so that `dsync-sim stack` can show its checkers fail when this layer is wrong (the
//! protocol's own planted bugs are `dsync_core::PlantedBug`).
//!
//! The type exists in every build; only a build with the `planted-bugs` feature has
//! `NodeBuilder::planted_bug` to switch one on, and everywhere else [`Bugs::has`] is a constant `false`
//! that compiles the switches away. The switch is a private field, so the feature changes no public type's
//! shape.

/// Mistakes in this crate's layer that `dsync-sim stack` switches on one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PlantedBug {
    /// The driver starts a lock request whose caller already gave up (its abandon overtook the request),
    /// and keeps what it wins: nobody releases the lock, and the driver refreshes it forever.
    AbandonOvertakesRequest,
    /// The driver never tells a guard that its lease was lost, so the application goes on working.
    LostNotSignalled,
    /// Fencing floors are written without fsync of the file and of the directory: a crash may leave an
    /// older floor on disk, and the restarted node reissues tokens.
    FloorWithoutFsync,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 3] =
        [PlantedBug::AbandonOvertakesRequest, PlantedBug::LostNotSignalled, PlantedBug::FloorWithoutFsync];

    /// The name on command lines.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AbandonOvertakesRequest => "abandon-overtakes-request",
            PlantedBug::LostNotSignalled => "lost-not-signalled",
            PlantedBug::FloorWithoutFsync => "floor-without-fsync",
        }
    }

    /// The bug called `name` (see [`PlantedBug::name`]).
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl std::fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The planted bug a node runs with (none in a build without the `planted-bugs` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bugs(#[cfg(feature = "planted-bugs")] pub(crate) Option<PlantedBug>);

impl Bugs {
    /// Whether `bug` is switched on.
    #[inline]
    pub(crate) fn has(self, bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.0 == Some(bug);
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}
