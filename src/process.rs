//! The exporter's own `process_*` metrics, as every Prometheus client library
//! defines them, read from `/proc/self` at each scrape.
//!
//! Written here instead of taking the `prometheus` crate's collector, which
//! counts CPU in whole seconds: the exporter is idle most of the time, so
//! `rate(process_cpu_seconds_total[5m])` read 0 (or jumped by a whole
//! second). Here CPU has the kernel's resolution (a clock tick, 10 ms).
//!
//! Beside them, `nexrender_exporter_memory_limit_bytes`: the memory limit
//! of the exporter's cgroup (a container's or a systemd unit's), which the
//! process metrics do not say, so an alert can compare resident memory
//! with it. Absent when there is none.

use std::path::PathBuf;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

pub(crate) struct ProcessCollector {
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    virtual_memory: IntGauge,
    resident_memory: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
    memory_limit: IntGauge,
    descs: Vec<Desc>,
    ticks_per_second: f64,
    page_size: i64,
    /// CPU ticks already counted: the counter only ever moves forward.
    counted_ticks: Mutex<u64>,
}

impl ProcessCollector {
    pub(crate) fn for_self() -> prometheus::Result<ProcessCollector> {
        let counter = |name: &str, help: &str| Counter::with_opts(Opts::new(name, help));
        let gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        let c = ProcessCollector {
            cpu: counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )?,
            open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )?,
            virtual_memory: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            resident_memory: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            start_time: Gauge::with_opts(Opts::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ))?,
            threads: gauge("process_threads", "Number of OS threads in the process.")?,
            memory_limit: gauge(
                "nexrender_exporter_memory_limit_bytes",
                "Memory limit of the exporter's cgroup (cgroup v2 memory.max, v1 memory.limit_in_bytes); absent when unlimited or unknown.",
            )?,
            descs: Vec::new(),
            ticks_per_second: procfs::ticks_per_second().max(1) as f64,
            page_size: procfs::page_size() as i64,
            counted_ticks: Mutex::new(0),
        };
        let stat = procfs::process::Process::myself().and_then(|p| p.stat());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        c.start_time.set(start_time(
            procfs::boot_time_secs().ok(),
            stat.ok().map(|s| s.starttime),
            c.ticks_per_second,
            now,
        ));
        let descs = c
            .families()
            .into_iter()
            .chain([&c.memory_limit as &dyn Collector])
            .flat_map(|m| m.desc().into_iter().cloned().collect::<Vec<_>>())
            .collect();
        Ok(ProcessCollector { descs, ..c })
    }

    fn families(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu,
            &self.open_fds,
            &self.max_fds,
            &self.virtual_memory,
            &self.resident_memory,
            &self.start_time,
            &self.threads,
        ]
    }

    /// Reads `/proc/self`; what cannot be read keeps its last value.
    fn refresh(&self) {
        let Ok(p) = procfs::process::Process::myself() else {
            return;
        };
        if let Ok(n) = p.fd_count() {
            self.open_fds.set(n as i64);
        }
        if let Ok(limits) = p.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                self.max_fds.set(max as i64);
            }
        }
        if let Ok(stat) = p.stat() {
            self.virtual_memory.set(stat.vsize as i64);
            self.resident_memory.set(stat.rss as i64 * self.page_size);
            self.threads.set(stat.num_threads);
            let ticks = stat.utime + stat.stime;
            let mut counted = self.counted_ticks.lock().unwrap_or_else(|p| p.into_inner());
            if ticks > *counted {
                self.cpu
                    .inc_by((ticks - *counted) as f64 / self.ticks_per_second);
                *counted = ticks;
            }
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let limit = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|cgroup| memory_limit(&cgroup, |f| std::fs::read_to_string(f).ok()));
        let mut families: Vec<MetricFamily> = self
            .families()
            .into_iter()
            .flat_map(|m| m.collect())
            .collect();
        if let Some(limit) = limit {
            self.memory_limit
                .set(i64::try_from(limit).unwrap_or(i64::MAX));
            families.extend(self.memory_limit.collect());
        }
        families
    }
}

/// The process's start (Unix seconds): the boot time plus its start in
/// clock ticks after boot, as /proc says. Where /proc/stat (the boot time)
/// is hidden, as the systemd unit's `ProcSubset=pid` hides it, `now`: the
/// collector is made at start, moments after the process began (the
/// metric read 0 there before).
fn start_time(boot: Option<u64>, start_ticks: Option<u64>, ticks_per_second: f64, now: f64) -> f64 {
    match (boot, start_ticks) {
        (Some(boot), Some(ticks)) => boot as f64 + ticks as f64 / ticks_per_second,
        _ => now,
    }
}

/// Raises the soft limit of open files to the hard limit, as Go programs
/// do at start: the usual soft default (1024) is below what the listeners
/// allow. The limits before and after, or why it could not (a seccomp
/// filter that forbids setrlimit, as the shipped systemd unit's does; the
/// unit sets `LimitNOFILE=` instead).
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    if before >= hard {
        return Ok((before, before));
    }
    let after = rlimit::increase_nofile_limit(hard)?;
    Ok((before, after))
}

/// The memory limit of the cgroup that `/proc/self/cgroup` (`cgroup`)
/// names, reading its files with `read`: cgroup v2's `memory.max`, else
/// v1's `memory.limit_in_bytes`. `None` when unlimited (`max`, or v1's
/// near-2^63 "no limit") or unreadable.
fn memory_limit(cgroup: &str, read: impl Fn(&PathBuf) -> Option<String>) -> Option<u64> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut files = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(root.join(path).join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(root.join("memory").join(path).join("memory.limit_in_bytes"));
        }
    }
    files.iter().find_map(|f| {
        let text = read(f)?;
        let limit: u64 = text.trim().parse().ok()?;
        // v1 writes "no limit" as the largest page-aligned i64.
        (limit < 1 << 60).then_some(limit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(c: &ProcessCollector) -> f64 {
        let families = c.collect();
        let f = families
            .iter()
            .find(|f| f.name() == "process_cpu_seconds_total")
            .expect("cpu family");
        f.get_metric()[0].get_counter().get_value()
    }

    #[test]
    fn cpu_time_moves_by_fractions_of_a_second() {
        let c = ProcessCollector::for_self().unwrap();
        let before = cpu(&c);
        // Burn CPU until the kernel has counted a few ticks (30 ms or so).
        let ticks = || {
            let s = procfs::process::Process::myself().unwrap().stat().unwrap();
            s.utime + s.stime
        };
        let start = ticks();
        let mut x = 0u64;
        while ticks() < start + 3 {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let moved = cpu(&c) - before;
        assert!(
            moved > 0.0 && moved < 0.9,
            "moved {moved} s: a whole-second counter would show 0 or 1"
        );
    }

    #[test]
    fn every_standard_process_metric_is_there() {
        let c = ProcessCollector::for_self().unwrap();
        let names: Vec<String> = c.collect().iter().map(|f| f.name().to_owned()).collect();
        for want in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert_eq!(c.desc().len(), 8);
    }

    fn files<'a>(files: &'a [(&'a str, &'a str)]) -> impl Fn(&PathBuf) -> Option<String> + 'a {
        move |p| {
            files
                .iter()
                .find(|(f, _)| p == &PathBuf::from(f))
                .map(|(_, text)| text.to_string())
        }
    }

    #[test]
    fn the_start_time_is_the_processs_or_now_where_proc_hides_the_boot_time() {
        assert_eq!(start_time(Some(1_000), Some(250), 100.0, 9_999.0), 1_002.5);
        assert_eq!(start_time(None, Some(250), 100.0, 9_999.0), 9_999.0);
        let c = ProcessCollector::for_self().unwrap();
        c.refresh();
        assert!(c.start_time.get() > 1.7e9, "{}", c.start_time.get());
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        // Started as a service manager usually starts one: soft 1024.
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let low = hard.min(1024);
        rlimit::Resource::NOFILE.set(low, hard).unwrap();
        let (before, after) = raise_open_files_limit().unwrap();
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!((before, after, soft), (low, hard, hard));
        // Again: nothing to raise.
        assert_eq!(raise_open_files_limit().unwrap(), (hard, hard));
    }

    #[test]
    fn the_memory_limit_is_read_from_the_cgroup_a_container_or_unit_puts_it_in() {
        // A container (cgroup v2, its own namespace): 192 MiB.
        let read = files(&[("/sys/fs/cgroup/memory.max", "201326592\n")]);
        assert_eq!(memory_limit("0::/\n", &read), Some(201_326_592));
        // A systemd unit with MemoryMax=.
        let read = files(&[(
            "/sys/fs/cgroup/system.slice/nexrender-exporter.service/memory.max",
            "268435456\n",
        )]);
        let cgroup = "0::/system.slice/nexrender-exporter.service\n";
        assert_eq!(memory_limit(cgroup, &read), Some(268_435_456));
        // No limit: absent.
        let read = files(&[("/sys/fs/cgroup/memory.max", "max\n")]);
        assert_eq!(memory_limit("0::/\n", &read), None);
        // cgroup v1, limited, then unlimited.
        let cgroup = "12:cpu,cpuacct:/x\n4:memory:/docker/abc\n";
        let read = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "104857600\n",
        )]);
        assert_eq!(memory_limit(cgroup, &read), Some(104_857_600));
        let read = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        assert_eq!(memory_limit(cgroup, &read), None);
        // Nothing readable, or garbage: absent, no panic.
        assert_eq!(memory_limit("0::/\n", files(&[])), None);
        assert_eq!(memory_limit("garbage", files(&[])), None);
        let read = files(&[("/sys/fs/cgroup/memory.max", "lots\n")]);
        assert_eq!(memory_limit("0::/\n", &read), None);
    }
}
