//! Reading host metrics: cpu from /proc/stat (a difference between two
//! samples), memory from /proc/meminfo, disk by statvfs, load from
//! /proc/loadavg.

use std::path::Path;

use levee_common::agent_config::{Metric, MetricThreshold};

/// Reads one metric; CPU needs the previous sample to take a difference.
#[derive(Debug, Default)]
pub struct Sampler {
    last_cpu: Option<(u64, u64)>,
}

impl Sampler {
    /// The metric's value now, or `None` when there is no value yet (the
    /// first CPU sample) or it cannot be read.
    pub fn sample(&mut self, threshold: &MetricThreshold) -> std::io::Result<Option<f64>> {
        Ok(match threshold.metric {
            Metric::Cpu => {
                let (busy, total) = cpu_times(&std::fs::read_to_string("/proc/stat")?)?;
                let previous = self.last_cpu.replace((busy, total));
                previous.and_then(|(last_busy, last_total)| {
                    let total = total.checked_sub(last_total).filter(|total| *total > 0)?;
                    Some(100.0 * busy.saturating_sub(last_busy) as f64 / total as f64)
                })
            }
            Metric::Memory => memory_used_percent(&std::fs::read_to_string("/proc/meminfo")?),
            Metric::Load1 => std::fs::read_to_string("/proc/loadavg")?
                .split_whitespace()
                .next()
                .and_then(|load| load.parse().ok()),
            Metric::Disk => Some(disk_used_percent(
                threshold.path.as_deref().unwrap_or(Path::new("/")),
            )?),
        })
    }
}

/// (busy, total) jiffies from the `cpu` line of /proc/stat.
fn cpu_times(stat: &str) -> std::io::Result<(u64, u64)> {
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .ok_or_else(|| std::io::Error::other("no cpu line in /proc/stat"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok((total.saturating_sub(idle), total))
}

fn memory_used_percent(meminfo: &str) -> Option<f64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| 100.0 * (total - available) / total)
}

fn disk_used_percent(path: &Path) -> std::io::Result<f64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let total = stat.blocks() as f64;
    let available = stat.blocks_available() as f64;
    Ok(if total > 0.0 {
        100.0 * (total - available) / total
    } else {
        0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse_into_percentages() {
        let stat = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_times(stat).unwrap(), (200, 1000));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(memory_used_percent(meminfo), Some(75.0));
    }

    #[test]
    fn every_metric_reads_on_this_host() {
        let mut sampler = Sampler::default();
        for metric in [Metric::Cpu, Metric::Memory, Metric::Disk, Metric::Load1] {
            let threshold = MetricThreshold {
                name: "t".into(),
                metric,
                above: Some(1.0),
                below: None,
                clear: None,
                sustained_ms: 0,
                interval_ms: 1,
                path: Some("/".into()),
            };
            let first = sampler.sample(&threshold).unwrap();
            if metric == Metric::Cpu {
                assert_eq!(first, None, "CPU needs two samples");
                let second = sampler.sample(&threshold).unwrap();
                assert!(
                    second.is_none_or(|cpu| (0.0..=100.0).contains(&cpu)),
                    "{second:?}"
                );
            } else {
                let value = first.expect("a value");
                assert!(value >= 0.0, "{metric:?}: {value}");
            }
        }
    }
}
