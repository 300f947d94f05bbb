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
    /// The statuses the vendor documents, in lifecycle order. From an
    /// account's first successful poll on, each has a series of
    /// `nexrender_jobs` (0 when no job has it).
    pub(crate) const KNOWN: [JobStatus; 6] = [
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

    pub(crate) fn is_known(&self) -> bool {
        !matches!(self, JobStatus::Other(_))
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Label for undocumented statuses past a limit: the metrics'
/// `max_unknown_statuses`, and the last code of a [`StatusTable`].
pub(crate) const OTHER_STATUS: &str = "other";

/// A status as one byte, so that a job's status takes one byte in a scan
/// and in the tracker's table. The documented statuses have fixed codes
/// (their place in [`JobStatus::KNOWN`]), so what a code means for the
/// lifecycle needs no table; only the names of undocumented statuses do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusByte(u8);

impl StatusByte {
    pub(crate) const QUEUED: StatusByte = StatusByte(0);
    pub(crate) const PENDING: StatusByte = StatusByte(1);
    pub(crate) const RENDERING: StatusByte = StatusByte(2);
    pub(crate) const FINISHED: StatusByte = StatusByte(3);
    pub(crate) const ERROR: StatusByte = StatusByte(4);
    pub(crate) const MANUALLY_CANCELLED: StatusByte = StatusByte(5);

    /// `finished`, `error` or `manually_cancelled`.
    pub fn is_terminal(self) -> bool {
        (Self::FINISHED.0..=Self::MANUALLY_CANCELLED.0).contains(&self.0)
    }

    /// Has the job begun rendering (or got past it)? Anything but `queued`
    /// and `pending`, undocumented statuses included.
    pub(crate) fn has_started(self) -> bool {
        self.0 > Self::PENDING.0
    }

    /// The code as an index into per-status arrays of [`StatusTable::COUNT`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The names behind status codes: one table per tracker, shared with the
/// scans it reads, so a status is coded once, when its page is read.
/// Undocumented statuses are numbered as they appear.
#[derive(Debug, Clone)]
pub struct StatusTable {
    names: Vec<JobStatus>,
}

impl Default for StatusTable {
    fn default() -> Self {
        Self {
            names: JobStatus::KNOWN.to_vec(),
        }
    }
}

impl StatusTable {
    /// Codes there can be. Past 255 distinct statuses, new ones share the
    /// last code, named [`OTHER_STATUS`]: a broken API cannot grow the
    /// table without end.
    pub(crate) const COUNT: usize = 256;

    pub fn code(&mut self, status: &JobStatus) -> StatusByte {
        let known = match status {
            JobStatus::Queued => StatusByte::QUEUED,
            JobStatus::Pending => StatusByte::PENDING,
            JobStatus::Rendering => StatusByte::RENDERING,
            JobStatus::Finished => StatusByte::FINISHED,
            JobStatus::Error => StatusByte::ERROR,
            JobStatus::ManuallyCancelled => StatusByte::MANUALLY_CANCELLED,
            JobStatus::Other(_) => return self.code_undocumented(status),
        };
        debug_assert_eq!(&JobStatus::KNOWN[known.index()], status);
        known
    }

    fn code_undocumented(&mut self, status: &JobStatus) -> StatusByte {
        let known = JobStatus::KNOWN.len();
        if let Some(i) = self.names[known..].iter().position(|n| n == status) {
            return StatusByte((known + i) as u8);
        }
        if self.names.len() < Self::COUNT - 1 {
            self.names.push(status.clone());
        } else if self.names.len() == Self::COUNT - 1 {
            self.names.push(JobStatus::Other(OTHER_STATUS.into()));
        }
        StatusByte((self.names.len() - 1) as u8)
    }

    pub fn name(&self, code: StatusByte) -> &JobStatus {
        // Every code was handed out by this table (or is a fixed one).
        &self.names[code.index().min(self.names.len() - 1)]
    }

    /// Every code handed out so far, with its name.
    pub fn iter(&self) -> impl Iterator<Item = (StatusByte, &JobStatus)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| (StatusByte(i as u8), name))
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
        let mut c = StatusTable::default();
        assert_eq!(c.code(&JobStatus::Finished), StatusByte::FINISHED);
        for s in JobStatus::KNOWN {
            let code = c.code(&s);
            assert_eq!(c.name(code), &s);
            assert_eq!(code.is_terminal(), s.is_terminal(), "{s}");
        }
        let first = c.code(&JobStatus::parse("render:prerender"));
        assert_eq!(c.code(&JobStatus::parse("render:prerender")), first);
        for n in 0..1000 {
            c.code(&JobStatus::parse(&format!("render:s{n}")));
        }
        let last = c.code(&JobStatus::parse("render:another"));
        assert_eq!(last.index(), 255);
        assert!(!last.is_terminal() && last.has_started());
        assert_eq!(c.name(last).as_str(), "other");
        assert_eq!(c.name(first).as_str(), "render:prerender");
    }
}
