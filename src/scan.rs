//! A window scan as data: the pages of `GET /jobs?minimal=true` put
//! together into one list of jobs, each id once, and indexed by id so the
//! tracker can walk it beside its own id-ordered table instead of hashing
//! every job.
//!
//! Pure: [`ScanBuilder`] takes decoded pages as the poller reads them.

use std::collections::{HashMap, HashSet};

use crate::api::{JobId, MinimalJob, Page, SkipReason};
use crate::status::{StatusByte, StatusTable};

/// One job of a [`WindowScan`], borrowed; its status coded by the table
/// the scan was built with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanJob<'a> {
    pub id: &'a JobId,
    pub status: StatusByte,
}

fn ulid_of(id: &JobId) -> Option<u128> {
    match id {
        JobId::Ulid(u) => Some(u.0),
        JobId::Other(_) => None,
    }
}

/// The jobs of one scan in the API's order (oldest first), each id once.
#[derive(Debug, Clone, Default)]
pub struct WindowScan {
    ids: Vec<JobId>,
    /// The status of each job, coded by the table the scan was built with.
    statuses: Vec<StatusByte>,
    /// Positions of the ULID-keyed jobs, in id order.
    by_ulid: ByUlid,
    /// Positions of the jobs whose id is not a ULID, in scan order.
    others: Vec<usize>,
    /// Where the jobs added from the live listing begin (see
    /// [`WindowScan::add_live`]); the length when there are none.
    live_from: usize,
}

impl WindowScan {
    /// Indexes `entries`, coding their statuses with `table`; a repeated
    /// id keeps its first place and the repeats are dropped. Returns the
    /// scan and how many were dropped.
    pub fn new(entries: Vec<MinimalJob>, table: &mut StatusTable) -> (WindowScan, usize) {
        let mut ids = Vec::with_capacity(entries.len());
        let mut statuses = Vec::with_capacity(entries.len());
        for entry in entries {
            ids.push(entry.id);
            statuses.push(table.code(&entry.status));
        }
        Self::index(ids, statuses)
    }

    fn index(mut ids: Vec<JobId>, mut statuses: Vec<StatusByte>) -> (Self, usize) {
        let (by_ulid, others) = index(&ids);
        let mut repeat = vec![];
        // The sort is stable: among equal ids the first in the scan comes
        // first. (Ids all in order have no repeats.)
        if let ByUlid::Sorted(by_ulid) = &by_ulid {
            for w in by_ulid.windows(2) {
                if ulid_of(&ids[w[0]]) == ulid_of(&ids[w[1]]) {
                    repeat.push(w[1]);
                }
            }
        }
        let mut seen = HashSet::new();
        for &i in &others {
            if !seen.insert(&ids[i]) {
                repeat.push(i);
            }
        }
        let dropped = repeat.len();
        let (by_ulid, others) = if repeat.is_empty() {
            (by_ulid, others)
        } else {
            let mut keep = vec![true; ids.len()];
            for i in repeat {
                keep[i] = false;
            }
            let mut keeps = keep.iter();
            ids.retain(|_| *keeps.next().unwrap_or(&true));
            let mut keeps = keep.iter();
            statuses.retain(|_| *keeps.next().unwrap_or(&true));
            index(&ids)
        };
        let live_from = ids.len();
        let scan = WindowScan {
            ids,
            statuses,
            by_ulid,
            others,
            live_from,
        };
        (scan, dropped)
    }

    /// The job at `pos` (in the API's order).
    pub fn get(&self, pos: usize) -> Option<ScanJob<'_>> {
        Some(ScanJob {
            id: self.ids.get(pos)?,
            status: *self.statuses.get(pos)?,
        })
    }

    /// The jobs in the API's order.
    pub fn iter(&self) -> impl Iterator<Item = ScanJob<'_>> {
        (0..self.ids.len()).filter_map(|i| self.get(i))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ULID-keyed jobs in id order, with their ids as numbers.
    pub(crate) fn by_ulid(&self) -> impl Iterator<Item = (u128, ScanJob<'_>)> {
        self.by_ulid.iter().filter_map(|i| {
            let job = self.get(i)?;
            Some((ulid_of(job.id)?, job))
        })
    }

    /// The first job of each status, in scan order: in an oldest-first
    /// scan, the oldest job of each status.
    pub(crate) fn first_of_each_status(&self) -> Vec<ScanJob<'_>> {
        let mut seen = [false; StatusTable::COUNT];
        let mut firsts = Vec::new();
        // Jobs added from the live listing are older than the rest.
        let live_first = (self.live_from..self.ids.len()).chain(0..self.live_from);
        for pos in live_first {
            let status = self.statuses[pos];
            if !std::mem::replace(&mut seen[status.index()], true) {
                firsts.extend(self.get(pos));
            }
        }
        firsts
    }

    /// The jobs whose id is not a ULID, in scan order.
    pub(crate) fn others(&self) -> impl Iterator<Item = ScanJob<'_>> {
        self.others.iter().filter_map(|&i| self.get(i))
    }

    /// Adds the jobs of `live`, a listing of every job not ended (read
    /// before this scan, coded with the same table), that this scan does
    /// not show: jobs still going whatever their age. A job both show keeps
    /// this scan's status, the later word.
    pub(crate) fn add_live(&mut self, live: &WindowScan) {
        let shown = self.positions(&live.ids);
        let before = self.ids.len();
        for (pos, at) in shown.iter().enumerate() {
            if at.is_none() {
                self.ids.push(live.ids[pos].clone());
                self.statuses.push(live.statuses[pos]);
            }
        }
        if self.ids.len() > before {
            (self.by_ulid, self.others) = index(&self.ids);
            self.live_from = before;
        }
    }

    /// Where the jobs added from the live listing begin: the positions
    /// before are the scan's own, in the API's order.
    pub(crate) fn live_from(&self) -> usize {
        self.live_from
    }

    /// The creation time of the newest job with a ULID id, by its id: the
    /// API's clock was at least this when it answered.
    pub(crate) fn newest_created(&self) -> Option<crate::clock::UnixMillis> {
        self.by_ulid()
            .last()
            .and_then(|(_, job)| job.id.created_hint())
    }

    /// Whether any job's status is terminal.
    pub(crate) fn any_terminal(&self) -> bool {
        self.statuses.iter().any(|status| status.is_terminal())
    }

    /// Where each of `ids` is in the scan: a binary search for a ULID, one
    /// pass over the others for the rest.
    pub fn positions(&self, ids: &[JobId]) -> Vec<Option<usize>> {
        let key = |k: usize| ulid_of(&self.ids[self.by_ulid.at(k)]).unwrap_or_default();
        let n = self.by_ulid.len();
        let mut out: Vec<Option<usize>> = ids
            .iter()
            .map(|id| match id {
                JobId::Ulid(u) => {
                    // The first of the ULIDs not below u, by bisection.
                    let (mut lo, mut hi) = (0, n);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if key(mid) < u.0 {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    (lo < n && key(lo) == u.0).then(|| self.by_ulid.at(lo))
                }
                JobId::Other(_) => None,
            })
            .collect();
        let mut wanted: HashMap<&JobId, Vec<usize>> = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            if matches!(id, JobId::Other(_)) {
                wanted.entry(id).or_default().push(n);
            }
        }
        if !wanted.is_empty() {
            for &i in &self.others {
                for &n in wanted.get(&self.ids[i]).into_iter().flatten() {
                    out[n] = Some(i);
                }
            }
        }
        out
    }
}

/// Where the ULID-keyed jobs of a scan are, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ByUlid {
    /// Every job's id is a ULID and each is greater than the one before:
    /// id order is the scan's (an API listing oldest first, as a rule), so
    /// no index is built (it would be 8 bytes a job).
    AllInOrder(usize),
    /// The positions, sorted by id.
    Sorted(Vec<usize>),
}

impl Default for ByUlid {
    fn default() -> Self {
        ByUlid::AllInOrder(0)
    }
}

impl ByUlid {
    fn len(&self) -> usize {
        match self {
            ByUlid::AllInOrder(n) => *n,
            ByUlid::Sorted(v) => v.len(),
        }
    }

    /// The position of the `k`th ULID in id order.
    fn at(&self, k: usize) -> usize {
        match self {
            ByUlid::AllInOrder(_) => k,
            ByUlid::Sorted(v) => v[k],
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|k| self.at(k))
    }
}

/// The positions of the ULID ids in id order, and of the others.
fn index(ids: &[JobId]) -> (ByUlid, Vec<usize>) {
    let in_order = ids
        .iter()
        .try_fold(None, |last: Option<u128>, id| match (ulid_of(id), last) {
            (Some(u), Some(l)) if u <= l => Err(()),
            (Some(u), _) => Ok(Some(u)),
            (None, _) => Err(()),
        })
        .is_ok();
    if in_order {
        return (ByUlid::AllInOrder(ids.len()), Vec::new());
    }
    let mut by_ulid = Vec::with_capacity(ids.len());
    let mut others = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match id {
            JobId::Ulid(_) => by_ulid.push(i),
            JobId::Other(_) => others.push(i),
        }
    }
    // Stable, and close to linear: a scan comes in creation order, which a
    // ULID's leading timestamp nearly follows.
    by_ulid.sort_by_key(|&i| ulid_of(&ids[i]));
    (ByUlid::Sorted(by_ulid), others)
}

/// A listing that cannot be trusted to hold every job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScanError {
    /// The API answered the same pages again instead of moving on.
    #[error("a full page after {after} jobs ended with a job that already ended an earlier page: the API is not paging")]
    NotPaging { after: usize },
    /// A page read after the first started with none of the jobs the last
    /// one ended with: the list moved by more than the overlap between
    /// reads (deletions, jobs leaving a filtered listing, or a short answer
    /// in the middle), so jobs may have been skipped.
    #[error("the page after {after} jobs did not overlap the one before (more than {overlap} jobs deleted or gone between two reads, or a page cut short): the scan may have skipped jobs")]
    Shifted { after: usize, overlap: usize },
}

/// Puts a scan together page by page, coding statuses with the tracker's
/// table as they are read.
#[derive(Debug)]
pub struct ScanBuilder<'t> {
    limit: usize,
    ids: Vec<JobId>,
    statuses: Vec<StatusByte>,
    table: &'t mut StatusTable,
    skipped: Vec<SkipReason>,
    /// Jobs read so far, repeats included (the next page's offset).
    offset: usize,
    /// How many jobs the last page added: where the overlap is looked for.
    last_page: usize,
    /// The last job of each full page: a page ending on one of these again
    /// means the API answers the same pages whatever the offset.
    page_ends: HashSet<JobId>,
}

impl<'t> ScanBuilder<'t> {
    /// A builder for pages of `limit` jobs, with room for `expected` jobs
    /// (say, as many as the last scan had): a million-job scan then never
    /// copies its lists to grow them.
    pub fn new(limit: usize, expected: usize, table: &'t mut StatusTable) -> Self {
        ScanBuilder {
            limit,
            ids: Vec::with_capacity(expected),
            statuses: Vec::with_capacity(expected),
            table,
            skipped: Vec::new(),
            offset: 0,
            last_page: 0,
            page_ends: HashSet::new(),
        }
    }

    /// The page size the builder expects: a shorter page is the last.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adds a page whose first `repeats` jobs were asked for again on
    /// purpose (the overlap between pages): those already read are dropped
    /// without a word. Any other repeat is dropped by [`Self::finish`] and
    /// counted as a duplicate.
    pub(crate) fn add_page(
        &mut self,
        page: Page<MinimalJob>,
        repeats: usize,
    ) -> Result<(), ScanError> {
        if page.raw_len >= self.limit {
            if let Some(last) = page.jobs.last() {
                if !self.page_ends.insert(last.id.clone()) {
                    return Err(ScanError::NotPaging { after: self.offset });
                }
            }
        }
        // A repeat can only be among the last jobs read: the window is
        // fixed, so deletions move jobs towards the start, never away.
        let before = self.ids.len();
        let tail_from = before - self.last_page.min(repeats * 2);
        let tail = &self.ids[tail_from..before];
        // (Skipped entries are not in `page.jobs`: with any, the first jobs
        // kept may all be past the overlap, and the check would be unsure.)
        if repeats > 0
            && tail_from < before
            && page.skipped.is_empty()
            && !page
                .jobs
                .iter()
                .take(repeats)
                .any(|job| tail.contains(&job.id))
        {
            return Err(ScanError::Shifted {
                after: self.offset,
                overlap: repeats,
            });
        }
        self.skipped.extend_from_slice(&page.skipped);
        self.offset += page.raw_len;
        for (i, job) in page.jobs.into_iter().enumerate() {
            if i < repeats && self.ids[tail_from..before].contains(&job.id) {
                continue;
            }
            self.ids.push(job.id);
            self.statuses.push(self.table.code(&job.status));
        }
        self.last_page = self.ids.len() - before;
        Ok(())
    }

    /// The scan, and the jobs skipped in it (by reason).
    pub fn finish(mut self) -> (WindowScan, Vec<SkipReason>) {
        let (scan, repeats) = WindowScan::index(self.ids, self.statuses);
        self.skipped
            .extend(std::iter::repeat_n(SkipReason::DuplicateId, repeats));
        (scan, self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::JobStatus;

    fn ulid(n: u64) -> JobId {
        JobId::Ulid(ulid::Ulid::from_parts(1_767_225_600_000 + n, u128::from(n)))
    }

    fn entry(id: JobId) -> MinimalJob {
        MinimalJob {
            id,
            status: JobStatus::Queued,
        }
    }

    fn page(ids: &[JobId], limit: usize) -> Page<MinimalJob> {
        let jobs: Vec<MinimalJob> = ids.iter().cloned().map(entry).collect();
        Page {
            raw_len: jobs.len().min(limit),
            jobs,
            skipped: vec![],
            server_time: None,
        }
    }

    #[test]
    fn ids_are_indexed_in_id_order_and_found_where_they_are() {
        // Out of id order, as jobs created in the same millisecond can be.
        let ids = [ulid(3), ulid(1), JobId::Other("x".into()), ulid(2)];
        let (scan, dropped) = WindowScan::new(
            ids.iter().cloned().map(entry).collect(),
            &mut StatusTable::default(),
        );
        assert_eq!(dropped, 0);
        let order: Vec<u128> = scan.by_ulid().map(|(k, _)| k).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(scan.positions(std::slice::from_ref(id)), [Some(i)]);
        }
        assert_eq!(scan.positions(&[ulid(9)]), [None]);
        assert_eq!(scan.others().count(), 1);
    }

    #[test]
    fn a_scan_already_in_id_order_needs_no_index_and_reads_the_same() {
        let scan_of = |ids: &[JobId]| {
            WindowScan::new(
                ids.iter().cloned().map(entry).collect(),
                &mut StatusTable::default(),
            )
        };
        let in_order: Vec<JobId> = (0..50).map(ulid).collect();
        let (scan, dropped) = scan_of(&in_order);
        assert_eq!((dropped, &scan.by_ulid), (0, &ByUlid::AllInOrder(50)));
        // The same jobs, two swapped: indexed, and read the same by id.
        let mut swapped = in_order.clone();
        swapped.swap(10, 11);
        let (other, _) = scan_of(&swapped);
        assert!(matches!(other.by_ulid, ByUlid::Sorted(_)));
        let keys = |s: &WindowScan| s.by_ulid().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(&scan), keys(&other));
        for (i, id) in in_order.iter().enumerate() {
            assert_eq!(scan.positions(std::slice::from_ref(id)), [Some(i)]);
        }
        assert_eq!(scan.positions(&[ulid(99), ulid(0)]), [None, Some(0)]);
        // A repeat is found through the index, and dropped; what is left is
        // in order again. An id that is not a ULID takes the index.
        let mut repeated = in_order.clone();
        repeated.insert(20, ulid(19));
        let (scan, dropped) = scan_of(&repeated);
        assert_eq!((dropped, &scan.by_ulid), (1, &ByUlid::AllInOrder(50)));
        assert_eq!(keys(&scan), keys(&other));
        let (scan, _) = scan_of(&[ulid(1), JobId::Other("x".into())]);
        assert!(matches!(scan.by_ulid, ByUlid::Sorted(_)));
        assert!(scan_of(&[]).0.positions(&[ulid(1)]) == [None]);
    }

    #[test]
    fn a_repeated_id_keeps_its_first_place() {
        let ids = [
            ulid(1),
            JobId::Other("a".into()),
            ulid(2),
            ulid(1),
            JobId::Other("a".into()),
            ulid(3),
            ulid(1),
        ];
        let (scan, dropped) = WindowScan::new(
            ids.iter().cloned().map(entry).collect(),
            &mut StatusTable::default(),
        );
        assert_eq!(dropped, 3);
        let kept: Vec<JobId> = scan.iter().map(|e| e.id.clone()).collect();
        assert_eq!(kept, [ulid(1), JobId::Other("a".into()), ulid(2), ulid(3)]);
        assert_eq!(scan.positions(&[ulid(3)]), [Some(3)]);
    }

    #[test]
    fn the_overlap_between_pages_is_dropped_silently_and_other_repeats_are_counted() {
        let ids: Vec<JobId> = (0..12).map(ulid).collect();
        let mut table = StatusTable::default();
        let mut b = ScanBuilder::new(6, 0, &mut table);
        b.add_page(page(&ids[0..6], 6), 0).unwrap();
        // The next page starts 2 jobs early; it also shows job 0 again.
        let mut second = ids[4..10].to_vec();
        second[3] = ulid(0);
        b.add_page(page(&second, 6), 2).unwrap();
        b.add_page(page(&ids[8..12], 6), 2).unwrap();
        let (scan, skipped) = b.finish();
        assert_eq!(skipped, [SkipReason::DuplicateId]);
        let got: Vec<JobId> = scan.iter().map(|e| e.id.clone()).collect();
        let want: Vec<JobId> = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
            .into_iter()
            .map(ulid)
            .collect();
        assert_eq!(got, want, "job 7 was hidden by the repeat of job 0");
    }

    #[test]
    fn pages_that_come_round_again_are_not_paging() {
        let a: Vec<JobId> = (0..5).map(ulid).collect();
        // The second page starts one job early, on the last of the first.
        let b: Vec<JobId> = (4..9).map(ulid).collect();
        let mut table = StatusTable::default();
        let mut builder = ScanBuilder::new(5, 0, &mut table);
        builder.add_page(page(&a, 5), 0).unwrap();
        builder.add_page(page(&b, 5), 1).unwrap();
        assert_eq!(
            builder.add_page(page(&a, 5), 1),
            Err(ScanError::NotPaging { after: 10 })
        );
        // The same page twice in a row, too.
        let mut builder = ScanBuilder::new(5, 0, &mut table);
        builder.add_page(page(&a, 5), 0).unwrap();
        assert!(builder.add_page(page(&a, 5), 1).is_err());
    }
}
