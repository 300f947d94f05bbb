//! One hand-moved clock for the simulator and the exporter in the same test.
//! The two crates each own their clock (the double must not borrow the
//! exporter's time code), so the exporter reads the simulator's clock
//! through this newtype.

use std::sync::Arc;

use nexrender_simulator::clock::{Clock as _, ManualClock};

/// The simulator's [`ManualClock`], seen as the exporter's clock.
pub struct SimulatedTime(pub Arc<ManualClock>);

impl nexrender_exporter::clock::Clock for SimulatedTime {
    fn now_millis(&self) -> nexrender_exporter::clock::UnixMillis {
        self.0.now_millis()
    }
}
