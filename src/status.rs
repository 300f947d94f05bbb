//! Job statuses as the Nexrender Cloud API v2 reports them, and the states
//! of the self-hosted server (`@nexrender/server`, API v1).
//!
//! The spec's `status` field has no enum and ends its list in "etc.", so
//! anything we do not know is kept verbatim in [`JobStatus::Other`] rather
//! than rejected. The self-hosted server's states are its own names too:
//! `created` and `picked` wait like `queued`; `started` and every
//! `render:*` stage are jobs in progress, like the Cloud's `render:dorender`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    Queued,
    Pending,
    /// The self-hosted server's state of a job not yet queued.
    Created,
    /// The self-hosted server's state of a job a worker took and has not
    /// started yet (a worker that dies there leaves it so for ever).
    Picked,
    Rendering,
    Finished,
    Error,
    ManuallyCancelled,
    /// A status the API documents nowhere (for example another `render:*` substate).
    Other(Box<str>),
}

/// Which API an account's jobs come from, and so which statuses it
/// documents: those have a series of `nexrender_jobs` from the account's
/// first successful poll on (0 when no job has it); any other is an
/// undocumented status, bounded by `metrics.max_unknown_statuses`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// The Nexrender Cloud API v2.
    #[default]
    Cloud,
    /// The self-hosted `@nexrender/server` (API v1).
    Server,
}

impl ApiKind {
    /// The statuses this API documents, in lifecycle order.
    pub fn statuses(self) -> Vec<JobStatus> {
        match self {
            ApiKind::Cloud => JobStatus::KNOWN.to_vec(),
            ApiKind::Server => SERVER_STATES.iter().map(|s| JobStatus::parse(s)).collect(),
        }
    }

    /// Does this API document `status`?
    pub fn knows(self, status: &JobStatus) -> bool {
        match self {
            ApiKind::Cloud => JobStatus::KNOWN.contains(status),
            ApiKind::Server => SERVER_STATES.contains(&status.as_str()),
        }
    }

    /// Its terminal statuses (zero-filled completions).
    pub fn terminal(self) -> Vec<JobStatus> {
        self.statuses()
            .into_iter()
            .filter(JobStatus::is_terminal)
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Cloud => "cloud",
            ApiKind::Server => "server",
        }
    }
}

/// The self-hosted server's states (`@nexrender/server` 1.38.0 and its
/// worker), in lifecycle order.
pub const SERVER_STATES: [&str; 15] = [
    "created",
    "queued",
    "picked",
    "started",
    "render:setup",
    "render:predownload",
    "render:download",
    "render:postdownload",
    "render:prerender",
    "render:script",
    "render:dorender",
    "render:postrender",
    "render:cleanup",
    "finished",
    "error",
];

impl JobStatus {
    /// The statuses the Cloud API documents, in lifecycle order (see
    /// [`ApiKind::statuses`]).
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
            "created" => JobStatus::Created,
            "picked" => JobStatus::Picked,
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
            JobStatus::Created => "created",
            JobStatus::Picked => "picked",
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
/// and in the tracker's table. The statuses of the lifecycle have fixed
/// codes (their place in [`CODED`]: waiting, then in progress, then
/// ended), so what a code means for the lifecycle needs no table; only the
/// names of other statuses do (all of them jobs in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusByte(u8);

impl StatusByte {
    pub(crate) const QUEUED: StatusByte = StatusByte(0);
    pub(crate) const PENDING: StatusByte = StatusByte(1);
    pub(crate) const CREATED: StatusByte = StatusByte(2);
    pub(crate) const PICKED: StatusByte = StatusByte(3);
    pub(crate) const RENDERING: StatusByte = StatusByte(4);
    pub(crate) const FINISHED: StatusByte = StatusByte(5);
    pub(crate) const ERROR: StatusByte = StatusByte(6);
    pub(crate) const MANUALLY_CANCELLED: StatusByte = StatusByte(7);

    /// `finished`, `error` or `manually_cancelled`.
    pub fn is_terminal(self) -> bool {
        (Self::FINISHED.0..=Self::MANUALLY_CANCELLED.0).contains(&self.0)
    }

    /// Has the job begun rendering (or got past it)? Anything but the
    /// waiting statuses (`queued`, `pending`, `created`, `picked`),
    /// undocumented statuses included.
    pub(crate) fn has_started(self) -> bool {
        self.0 > Self::PICKED.0
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

/// The statuses with fixed codes, in code order.
const CODED: [JobStatus; 8] = [
    JobStatus::Queued,
    JobStatus::Pending,
    JobStatus::Created,
    JobStatus::Picked,
    JobStatus::Rendering,
    JobStatus::Finished,
    JobStatus::Error,
    JobStatus::ManuallyCancelled,
];

impl Default for StatusTable {
    fn default() -> Self {
        Self {
            names: CODED.to_vec(),
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
            JobStatus::Created => StatusByte::CREATED,
            JobStatus::Picked => StatusByte::PICKED,
            JobStatus::Rendering => StatusByte::RENDERING,
            JobStatus::Finished => StatusByte::FINISHED,
            JobStatus::Error => StatusByte::ERROR,
            JobStatus::ManuallyCancelled => StatusByte::MANUALLY_CANCELLED,
            JobStatus::Other(_) => return self.code_undocumented(status),
        };
        debug_assert_eq!(&CODED[known.index()], status);
        known
    }

    fn code_undocumented(&mut self, status: &JobStatus) -> StatusByte {
        let known = CODED.len();
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
    fn the_servers_waiting_states_have_not_started_and_its_stages_have() {
        let mut c = StatusTable::default();
        let started = |c: &mut StatusTable, s: &str| c.code(&JobStatus::parse(s)).has_started();
        for waiting in ["created", "queued", "picked"] {
            assert!(!started(&mut c, waiting), "{waiting}");
        }
        for going in [
            "started",
            "render:setup",
            "render:dorender",
            "render:cleanup",
        ] {
            assert!(started(&mut c, going), "{going}");
        }
        assert_eq!(ApiKind::Server.statuses().len(), 15);
        assert_eq!(
            ApiKind::Server.terminal(),
            [JobStatus::Finished, JobStatus::Error]
        );
        assert!(!ApiKind::Cloud.knows(&JobStatus::Picked));
    }

    #[test]
    fn an_undocumented_status_is_kept_verbatim_and_is_not_terminal() {
        let s = JobStatus::parse("render:postrender");
        assert_eq!(s.as_str(), "render:postrender");
        assert!(!ApiKind::Cloud.knows(&s));
        assert!(ApiKind::Server.knows(&s));
        assert!(!s.is_terminal());
    }

    #[test]
    fn status_codes_are_fixed_for_known_statuses_and_bounded_for_others() {
        let mut c = StatusTable::default();
        assert_eq!(c.code(&JobStatus::Finished), StatusByte::FINISHED);
        for s in ApiKind::Cloud
            .statuses()
            .into_iter()
            .chain(ApiKind::Server.statuses())
        {
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
