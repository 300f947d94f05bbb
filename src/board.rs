//! What the landing page and `/readyz` know of each account: the pollers
//! write it, the HTTP server reads it.

use std::sync::{Arc, RwLock};

use crate::clock::UnixMillis;
use crate::shard::Shard;

/// What the landing page and `/readyz` know of an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AccountState {
    pub name: String,
    pub attempts: u64,
    pub last_attempt: Option<UnixMillis>,
    pub last_success: Option<UnixMillis>,
    /// The last poll's error; `None` when it succeeded.
    pub last_error: Option<String>,
    /// Times its poller died (a panic, a bug) and was restarted.
    pub restarts: u64,
    /// Why its poller died, from then until the restarted poller's first
    /// poll attempt.
    pub restarting: Option<String>,
    /// The oldest jobs of each status not ended, at the last good poll.
    pub oldest: Vec<ListedJob>,
}

/// One of the oldest jobs of its status, as the landing page and
/// `/api/v1/oldest-jobs` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedJob {
    /// The status label, as `nexrender_jobs` has it.
    pub status: String,
    pub id: String,
    /// The template's display name (its id until the name is known);
    /// `None` for a job without a template, or not looked up yet.
    pub template: Option<String>,
    pub template_id: Option<String>,
    pub created: UnixMillis,
    pub started: Option<UnixMillis>,
    /// Whether its look-up was read (else its template is not known yet).
    pub looked_up: bool,
}

/// Shared between the pollers and the HTTP server.
#[derive(Debug, Default)]
pub struct StatusBoard {
    accounts: RwLock<Vec<AccountState>>,
    /// This replica's shard, and how many configured accounts other
    /// shards poll.
    shard: RwLock<(Shard, usize)>,
}

impl StatusBoard {
    /// Starts showing an account (added by a reload).
    pub fn add(&self, name: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            if !accounts.iter().any(|a| a.name == name) {
                accounts.push(AccountState {
                    name: name.to_owned(),
                    ..AccountState::default()
                });
            }
        }
    }

    /// Stops showing an account (removed by a reload).
    pub fn remove(&self, name: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            accounts.retain(|a| a.name != name);
        }
    }

    pub fn new(names: &[String]) -> Arc<Self> {
        Arc::new(Self {
            accounts: RwLock::new(
                names
                    .iter()
                    .map(|n| AccountState {
                        name: n.clone(),
                        ..AccountState::default()
                    })
                    .collect(),
            ),
            shard: RwLock::new((Shard::default(), 0)),
        })
    }

    /// This replica's shard, and how many accounts other shards poll.
    pub(crate) fn set_shard(&self, shard: Shard, elsewhere: usize) {
        if let Ok(mut s) = self.shard.write() {
            *s = (shard, elsewhere);
        }
    }

    pub fn shard(&self) -> (Shard, usize) {
        self.shard.read().map(|s| *s).unwrap_or_default()
    }

    pub(crate) fn snapshot(&self) -> Vec<AccountState> {
        self.accounts.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Every account has finished its first poll attempt, and no poller is
    /// waiting to be restarted.
    pub fn ready(&self) -> bool {
        // Under the lock, not on a copy: the probes ask often, and the
        // accounts carry their oldest jobs.
        self.accounts.read().map_or(true, |accounts| {
            accounts
                .iter()
                .all(|a| a.attempts > 0 && a.restarting.is_none())
        })
    }

    /// An account's poller died; it is restarted after a pause.
    pub(crate) fn poller_died(&self, name: &str, why: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            if let Some(a) = accounts.iter_mut().find(|a| a.name == name) {
                a.restarts += 1;
                a.restarting = Some(why.to_owned());
            }
        }
    }

    /// The oldest jobs of account `name` as its last good poll listed them
    /// (by status label, oldest first).
    pub fn oldest(&self, name: &str) -> Vec<ListedJob> {
        let accounts = self.accounts.read();
        let found = accounts
            .as_ref()
            .ok()
            .and_then(|a| a.iter().find(|a| a.name == name));
        found.map(|a| a.oldest.clone()).unwrap_or_default()
    }

    /// The account's oldest jobs, as its last good poll found them.
    pub(crate) fn set_oldest(&self, name: &str, oldest: Vec<ListedJob>) {
        if let Ok(mut accounts) = self.accounts.write() {
            if let Some(a) = accounts.iter_mut().find(|a| a.name == name) {
                a.oldest = oldest;
            }
        }
    }

    pub(crate) fn record(&self, name: &str, at: UnixMillis, error: Option<String>) {
        if let Ok(mut accounts) = self.accounts.write() {
            if let Some(a) = accounts.iter_mut().find(|a| a.name == name) {
                a.attempts += 1;
                a.last_attempt = Some(at);
                a.restarting = None;
                if error.is_none() {
                    a.last_success = Some(at);
                }
                a.last_error = error;
            }
        }
    }
}
