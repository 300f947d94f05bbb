//! The job statuses the simulator writes and filters on, named as the
//! vendor names them. Written here from the spec and the notes, not taken
//! from the exporter: if the exporter got a name wrong, the double must not
//! repeat the mistake and hide it from every test.
//!
//! Sources: the Cloud API v2 OpenAPI spec (`Job.status`, a string whose
//! description lists the common values and ends in "etc.", so no enum) and
//! the vendor's "Tracking rendering jobs" page, summarised in the project's
//! API notes: `queued` (waiting for a worker), `pending` (a parent waiting
//! for its nested children), `render:dorender` (rendering), `finished`,
//! `error`, `manually_cancelled` (cancelled through the API; stored as
//! `error` inside Nexrender, reported as `manually_cancelled` by v2).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    Queued,
    Pending,
    Rendering,
    Finished,
    Error,
    ManuallyCancelled,
    /// Any other status, kept verbatim: the spec's list ends in "etc.", so
    /// a filter naming, say, `render:postrender` must be accepted.
    Other(Box<str>),
}

/// Every documented status beside its wire name, the one place either is
/// written down.
const WIRE_NAMES: [(JobStatus, &str); 6] = [
    (JobStatus::Queued, "queued"),
    (JobStatus::Pending, "pending"),
    (JobStatus::Rendering, "render:dorender"),
    (JobStatus::Finished, "finished"),
    (JobStatus::Error, "error"),
    (JobStatus::ManuallyCancelled, "manually_cancelled"),
];

impl JobStatus {
    /// The status a wire name stands for; unknown names become [`JobStatus::Other`].
    pub fn parse(wire: &str) -> JobStatus {
        WIRE_NAMES
            .iter()
            .find(|(_, name)| *name == wire)
            .map_or_else(|| JobStatus::Other(wire.into()), |(s, _)| s.clone())
    }

    /// The name the API writes for this status.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Other(name) => name,
            documented => WIRE_NAMES
                .iter()
                .find(|(s, _)| s == documented)
                .map(|(_, name)| *name)
                .expect("every documented status has a wire name"),
        }
    }

    /// `finished`, `error` and `manually_cancelled` end a job for good.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Error | JobStatus::ManuallyCancelled
        )
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
    fn documented_statuses_have_the_names_the_vendor_gives_them() {
        let names: Vec<&str> = WIRE_NAMES.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "queued",
                "pending",
                "render:dorender",
                "finished",
                "error",
                "manually_cancelled"
            ]
        );
        for (s, name) in &WIRE_NAMES {
            assert_eq!(&JobStatus::parse(name), s);
        }
    }

    #[test]
    fn an_undocumented_status_is_kept_verbatim_and_does_not_end_a_job() {
        let s = JobStatus::parse("render:postrender");
        assert_eq!(s, JobStatus::Other("render:postrender".into()));
        assert_eq!(s.to_string(), "render:postrender");
        assert!(!s.is_terminal());
    }

    #[test]
    fn only_finished_error_and_cancelled_are_terminal() {
        let terminal: Vec<&str> = WIRE_NAMES
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(terminal, ["finished", "error", "manually_cancelled"]);
    }
}
