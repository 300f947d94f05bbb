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

/// Statuses as one-byte codes, so that a job's status takes one byte in
/// the tracker's table and in a scan. The documented statuses have fixed
/// codes (their place in [`JobStatus::KNOWN`]); others are numbered as they
/// appear.
#[derive(Debug, Clone)]
pub struct StatusCodes {
    names: Vec<JobStatus>,
}

impl Default for StatusCodes {
    fn default() -> Self {
        Self {
            names: JobStatus::KNOWN.to_vec(),
        }
    }
}

impl StatusCodes {
    /// Codes there can be. Past 255 distinct statuses, new ones share the
    /// last code, named as in the metrics: a broken API cannot grow the
    /// table without end.
    pub const COUNT: usize = 256;

    pub fn code(&mut self, s: &JobStatus) -> u8 {
        let known = match s {
            JobStatus::Queued => 0,
            JobStatus::Pending => 1,
            JobStatus::Rendering => 2,
            JobStatus::Finished => 3,
            JobStatus::Error => 4,
            JobStatus::ManuallyCancelled => 5,
            JobStatus::Other(_) => usize::MAX,
        };
        if let Some(c) = JobStatus::KNOWN.get(known) {
            debug_assert_eq!(c, s);
            return known as u8;
        }
        if let Some(i) = self.names.iter().position(|n| n == s) {
            return i as u8;
        }
        if self.names.len() < Self::COUNT - 1 {
            self.names.push(s.clone());
        } else if self.names.len() == Self::COUNT - 1 {
            self.names
                .push(JobStatus::Other(crate::metrics::OTHER_STATUS.into()));
        }
        (self.names.len() - 1) as u8
    }

    pub fn name(&self, c: u8) -> &JobStatus {
        &self.names[c as usize]
    }

    pub fn terminal(&self, c: u8) -> bool {
        self.name(c).is_terminal()
    }

    /// Has the job begun rendering (or got past it)?
    pub fn started(&self, c: u8) -> bool {
        !matches!(self.name(c), JobStatus::Queued | JobStatus::Pending)
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

    #[test]
    fn status_codes_are_fixed_for_known_statuses_and_bounded_for_others() {
        let mut c = StatusCodes::default();
        assert_eq!(c.code(&JobStatus::Finished), 3);
        let first = c.code(&JobStatus::parse("render:prerender"));
        assert_eq!(c.code(&JobStatus::parse("render:prerender")), first);
        for n in 0..1000 {
            c.code(&JobStatus::parse(&format!("render:s{n}")));
        }
        let last = c.code(&JobStatus::parse("render:another"));
        assert_eq!(last, 255);
        assert_eq!(c.name(last).as_str(), "other");
        assert_eq!(c.name(first).as_str(), "render:prerender");
    }
}
