//! Statistic sets: what CloudWatch takes instead of every sample (`SampleCount`, `Sum`,
//! `Minimum`, `Maximum`), kept per metric key by the recorder and taken at each upload.

use std::sync::{Arc, Mutex, PoisonError};

use metrics::{CounterFn, GaugeFn, HistogramFn, Key};
use metrics_util::registry::Storage;

/// The samples of one period, summed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticSet {
    /// How many samples.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl StatisticSet {
    /// The set of one sample.
    pub fn of(value: f64) -> Self {
        StatisticSet {
            count: 1,
            sum: value,
            min: value,
            max: value,
        }
    }

    /// Adds one sample.
    pub fn add(&mut self, value: f64) {
        self.merge(&StatisticSet::of(value));
    }

    /// Adds another set's samples.
    pub fn merge(&mut self, other: &StatisticSet) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The samples of one metric key since the last upload, and a gauge's current value.
#[derive(Debug, Default)]
pub struct Cell {
    state: Mutex<CellState>,
}

#[derive(Debug, Default)]
struct CellState {
    period: Option<StatisticSet>,
    /// A gauge's value, for `increment` and `decrement`.
    value: f64,
}

impl Cell {
    fn sample(&self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut state.period {
            Some(set) => set.add(value),
            None => state.period = Some(StatisticSet::of(value)),
        }
    }

    fn move_gauge(&self, change: impl FnOnce(f64) -> f64) {
        let value = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.value = change(state.value);
            state.value
        };
        self.sample(value);
    }

    /// The period's samples, leaving the cell empty for the next one.
    pub fn take(&self) -> Option<StatisticSet> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .period
            .take()
    }
}

/// A counter's increment is one sample of its size (the KPL's `UserRecordsPut` gets one sample per
/// Kinesis record, of its user records), so `Sum` is the count and `SampleCount` how many times it
/// was counted.
impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.sample(value as f64);
    }

    fn absolute(&self, value: u64) {
        self.sample(value as f64);
    }
}

/// Each value a gauge is set to is a sample (the KCL's `MillisBehindLatest`: one per batch).
impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.move_gauge(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.move_gauge(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.move_gauge(|_| value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.sample(value);
    }
}

/// The registry's storage: one [`Cell`] per key, whatever its kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct CellStorage;

impl Storage<Key> for CellStorage {
    type Counter = Arc<Cell>;
    type Gauge = Arc<Cell>;
    type Histogram = Arc<Cell>;

    fn counter(&self, _: &Key) -> Arc<Cell> {
        Arc::default()
    }

    fn gauge(&self, _: &Key) -> Arc<Cell> {
        Arc::default()
    }

    fn histogram(&self, _: &Key) -> Arc<Cell> {
        Arc::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_sums_counts_and_bounds_its_samples() {
        let mut set = StatisticSet::of(5.0);
        set.add(1.0);
        set.add(9.0);
        assert_eq!(
            set,
            StatisticSet {
                count: 3,
                sum: 15.0,
                min: 1.0,
                max: 9.0
            }
        );
        let mut empty = StatisticSet {
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        };
        empty.merge(&set);
        assert_eq!(empty, set);
    }

    #[test]
    fn a_cell_gives_its_period_once_and_gauges_sample_their_value() {
        let cell = Cell::default();
        CounterFn::increment(&cell, 3);
        CounterFn::increment(&cell, 4);
        assert_eq!(cell.take().map(|s| (s.count, s.sum)), Some((2, 7.0)));
        assert_eq!(cell.take(), None);
        GaugeFn::set(&cell, 10.0);
        GaugeFn::increment(&cell, 5.0);
        GaugeFn::decrement(&cell, 12.0);
        let set = cell.take().unwrap();
        assert_eq!((set.count, set.min, set.max), (3, 3.0, 15.0));
        HistogramFn::record(&cell, f64::NAN);
        assert_eq!(cell.take(), None, "a NaN is no sample");
    }
}
