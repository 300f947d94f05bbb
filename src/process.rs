//! The exporter's own `process_*` metrics, as every Prometheus client library
//! defines them, read from `/proc/self` at each scrape.
//!
//! Written here instead of taking the `prometheus` crate's collector, which
//! counts CPU in whole seconds: the exporter is idle most of the time, so
//! `rate(process_cpu_seconds_total[5m])` read 0 (or jumped by a whole
//! second). Here CPU has the kernel's resolution (a clock tick, 10 ms).

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

pub struct ProcessCollector {
    cpu: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    virtual_memory: IntGauge,
    resident_memory: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
    descs: Vec<Desc>,
    ticks_per_second: f64,
    page_size: i64,
    /// CPU ticks already counted: the counter only ever moves forward.
    counted_ticks: Mutex<u64>,
}

impl ProcessCollector {
    pub fn for_self() -> prometheus::Result<ProcessCollector> {
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
            descs: Vec::new(),
            ticks_per_second: procfs::ticks_per_second().max(1) as f64,
            page_size: procfs::page_size() as i64,
            counted_ticks: Mutex::new(0),
        };
        let stat = procfs::process::Process::myself().and_then(|p| p.stat());
        if let (Ok(boot), Ok(stat)) = (procfs::boot_time_secs(), stat) {
            c.start_time
                .set(boot as f64 + stat.starttime as f64 / c.ticks_per_second);
        }
        let descs = c
            .families()
            .into_iter()
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
        self.families()
            .into_iter()
            .flat_map(|m| m.collect())
            .collect()
    }
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
        assert_eq!(c.desc().len(), 7);
    }
}
