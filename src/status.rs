//! Job statuses as the Nexrender Cloud API v2 reports them.
//!
//! The spec's `status` field has no enum and ends its list in "etc.", so
//! anything we do not know is kept verbatim in [`JobStatus::Other`] rather
//! than rejected.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    Queued,
    Pending,
    Rendering,
    Finished,
    Error,
    ManuallyCancelled,
    /// A status the API documents nowhere (for example another `render:*` substate).
    Other(Box<str>),
}

impl JobStatus {
    /// The statuses the vendor documents, in lifecycle order. Exported as
    /// zero-filled series so dashboards always have them.
    pub const KNOWN: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Pending,
        JobStatus::Rendering,
        JobStatus::Finished,
        JobStatus::Error,
        JobStatus::ManuallyCancelled,
    ];

    /// The terminal statuses: a job in one of these never changes again.
    pub const TERMINAL: [JobStatus; 3] = [
        JobStatus::Finished,
        JobStatus::Error,
        JobStatus::ManuallyCancelled,
    ];

    pub fn parse(s: &str) -> JobStatus {
        match s {
            "queued" => JobStatus::Queued,
            "pending" => JobStatus::Pending,
            "render:dorender" => JobStatus::Rendering,
            "finished" => JobStatus::Finished,
            "error" => JobStatus::Error,
            "manually_cancelled" => JobStatus::ManuallyCancelled,
            other => JobStatus::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Pending => "pending",
            JobStatus::Rendering => "render:dorender",
            JobStatus::Finished => "finished",
            JobStatus::Error => "error",
            JobStatus::ManuallyCancelled => "manually_cancelled",
            JobStatus::Other(s) => s,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Error | JobStatus::ManuallyCancelled
        )
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, JobStatus::Other(_))
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_statuses_round_trip_through_their_wire_names() {
        for s in JobStatus::KNOWN {
            assert_eq!(JobStatus::parse(s.as_str()), s);
        }
    }

    #[test]
    fn an_undocumented_status_is_kept_verbatim_and_is_not_terminal() {
        let s = JobStatus::parse("render:postrender");
        assert_eq!(s.as_str(), "render:postrender");
        assert!(!s.is_known());
        assert!(!s.is_terminal());
    }
}
