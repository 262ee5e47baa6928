//! Engine time: nanoseconds on the monotonic clock since the prober
//! started, and the conversion of kernel receive timestamps (realtime)
//! into it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::engine::Nanos;

/// The prober's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Engine time now.
    pub fn now(&self) -> Nanos {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Realtime minus engine time, ns: subtract it from a realtime
    /// timestamp to get engine time. Sampled per receive batch, so a wall
    /// clock step affects at most one batch.
    pub fn realtime_offset(&self) -> i128 {
        let realtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        i128::try_from(realtime).unwrap_or(0) - i128::from(self.now())
    }

    /// Converts a realtime timestamp with an offset from
    /// [`Clock::realtime_offset`].
    pub fn from_realtime(realtime_ns: u64, offset: i128) -> Nanos {
        u64::try_from(i128::from(realtime_ns) - offset).unwrap_or(0)
    }

    /// Wall-clock time (Unix epoch, µs) of an engine time.
    pub fn to_unix_us(&self, at: Nanos) -> i64 {
        let offset = self.realtime_offset();
        i64::try_from((i128::from(at) + offset) / 1000).unwrap_or(i64::MAX)
    }
}
