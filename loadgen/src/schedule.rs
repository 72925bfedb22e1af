//! Which steps a run takes: the rate list (`--repeat` times over, round robin), or the
//! saturation search that doubles then bisects.
//!
//! Owns: the order of steps and the search's decisions. Must not: run a step.

use crate::cli::TrafficArgs;
use crate::report::StepResult;

/// The steps to run: each rate of `--rate`, the list `--repeat` times over (round
/// robin, so a drift of the machine spreads over every rate), or the saturation search.
pub struct StepSchedule {
    rates: Vec<f64>,
    next: usize,
    search: Option<(RateSearch, Option<f64>, f64)>,
}

impl StepSchedule {
    pub fn new(traffic: &TrafficArgs) -> Self {
        let search = traffic.find_max.then(|| {
            (
                RateSearch::new(traffic.rate[0], traffic.max_probes),
                Some(traffic.rate[0]),
                traffic.p99_max.as_secs_f64() * 1e6,
            )
        });
        let repeat = traffic.repeat.max(1) as usize;
        Self {
            rates: traffic.rate.repeat(repeat),
            next: 0,
            search,
        }
    }

    pub fn next_rate(&mut self) -> Option<f64> {
        match &self.search {
            Some((_, next, _)) => *next,
            None => {
                let rate = self.rates.get(self.next).copied();
                self.next += 1;
                rate
            }
        }
    }

    /// Whether a finished step passed (for the search: also p99 under its bound);
    /// feeds the search its outcome.
    pub fn judge(&mut self, step: &StepResult) -> bool {
        match &mut self.search {
            Some((search, next, p99_max_us)) => {
                let passed = step.passed && step.latency.p99_us <= *p99_max_us;
                *next = search.next(step.target_rate, passed);
                passed
            }
            None => step.passed,
        }
    }

    pub fn max_rate(&self) -> Option<f64> {
        self.search.as_ref().map(|(search, _, _)| search.best())
    }
}

/// The saturation search: double from the start rate while steps pass, then bisect
/// between the best pass and the first failure until they are within 5% (or the
/// probe budget runs out).
#[derive(Debug)]
pub struct RateSearch {
    /// Highest passing rate so far.
    best: Option<f64>,
    /// Lowest failing rate so far.
    failed: Option<f64>,
    probes_left: u32,
}

impl RateSearch {
    pub fn new(_start: f64, max_probes: u32) -> Self {
        Self {
            best: None,
            failed: None,
            probes_left: max_probes.max(1),
        }
    }

    /// Given the outcome of a probe at `rate`, the next rate to probe (None: done).
    pub fn next(&mut self, rate: f64, passed: bool) -> Option<f64> {
        self.probes_left = self.probes_left.saturating_sub(1);
        if passed {
            self.best = Some(self.best.map_or(rate, |b| b.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
        if self.probes_left == 0 {
            return None;
        }
        match (self.best, self.failed) {
            (Some(best), None) => Some(best * 2.0),
            (None, Some(failed)) if failed > 2.0 => Some((failed / 2.0).floor()),
            (None, Some(_)) => None,
            (Some(best), Some(failed)) if (failed - best) / best > 0.05 => {
                Some(((best + failed) / 2.0).round())
            }
            _ => None,
        }
    }

    /// The highest rate that passed (0 if none).
    pub fn best(&self) -> f64 {
        self.best.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_doubles_then_bisects() {
        let capacity = 5000.0;
        let mut search = RateSearch::new(1000.0, 20);
        let mut rate = Some(1000.0);
        let mut probed = Vec::new();
        while let Some(r) = rate {
            probed.push(r);
            rate = search.next(r, r <= capacity);
        }
        assert_eq!(&probed[..4], &[1000.0, 2000.0, 4000.0, 8000.0]);
        assert!(
            search.best() <= capacity && search.best() >= capacity * 0.95,
            "{}",
            search.best()
        );
        assert!(probed.len() < 12);
    }

    #[test]
    fn search_goes_down_when_the_start_fails_and_respects_budget() {
        let mut search = RateSearch::new(1000.0, 3);
        assert_eq!(search.next(1000.0, false), Some(500.0));
        assert_eq!(search.next(500.0, true), Some(750.0));
        assert_eq!(search.next(750.0, true), None);
        assert_eq!(search.best(), 750.0);
    }
}
