//! The KCL's lease options, with their names and defaults (`LeaseManagementConfig`).

use std::time::Duration;

/// A lease option that is unknown or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key is not a lease option.
    #[error("unknown lease option {key:?}")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is expected.
        reason: String,
    },
}

/// How leases are renewed, expire and are balanced. Names and defaults are the Java KCL's.
///
/// ```
/// use std::time::Duration;
/// use kinesis_consumer::lease::LeaseConfig;
///
/// let mut config = LeaseConfig::default().max_leases_to_steal_at_one_time(2);
/// config.set("failoverTimeMillis", "30000")?; // from a KCL .properties file or a binding
/// assert_eq!(config.get_failover_time(), Duration::from_secs(30));
/// assert_eq!(config.renew_interval(), Duration::from_millis(9_975));
/// assert_eq!(config.take_interval(), Duration::from_millis(60_050));
/// # Ok::<(), kinesis_consumer::lease::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    failover_time: Duration,
    epsilon: Duration,
    max_leases_for_worker: usize,
    max_leases_to_steal_at_one_time: usize,
    enable_priority_lease_assignment: bool,
    very_old_lease_multiplier: u32,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            failover_time: Duration::from_millis(10_000),
            epsilon: Duration::from_millis(25),
            max_leases_for_worker: usize::MAX,
            max_leases_to_steal_at_one_time: 1,
            enable_priority_lease_assignment: true,
            very_old_lease_multiplier: 3,
        }
    }
}

impl LeaseConfig {
    /// `failoverTimeMillis` (default 10 s): a lease whose counter has not moved for this long,
    /// on this worker's clock, is expired and may be taken.
    pub fn failover_time(mut self, value: Duration) -> Self {
        self.failover_time = value;
        self
    }

    /// `epsilonMillis` (default 25 ms): slack taken off the renew interval and added to the take
    /// interval, so a renewal always lands before another worker's expiry check.
    pub fn epsilon(mut self, value: Duration) -> Self {
        self.epsilon = value;
        self
    }

    /// `maxLeasesForWorker` (default unlimited): most leases this worker holds. Set too low,
    /// some shards may go unprocessed.
    pub fn max_leases_for_worker(mut self, value: usize) -> Self {
        self.max_leases_for_worker = value;
        self
    }

    /// `maxLeasesToStealAtOneTime` (default 1): most leases taken from a busier worker per
    /// taker run.
    pub fn max_leases_to_steal_at_one_time(mut self, value: usize) -> Self {
        self.max_leases_to_steal_at_one_time = value;
        self
    }

    /// `enablePriorityLeaseAssignment` (default true): leases unrenewed for
    /// `very_old_lease_multiplier × failover_time`, and new unowned leases, are taken at once,
    /// beyond the balanced target (up to `maxLeasesForWorker`).
    pub fn enable_priority_lease_assignment(mut self, value: bool) -> Self {
        self.enable_priority_lease_assignment = value;
        self
    }

    /// The Java taker's `veryOldLeaseDurationNanosMultiplier` (default 3).
    pub fn very_old_lease_multiplier(mut self, value: u32) -> Self {
        self.very_old_lease_multiplier = value;
        self
    }

    /// See [`LeaseConfig::failover_time`].
    pub fn get_failover_time(&self) -> Duration {
        self.failover_time
    }

    /// See [`LeaseConfig::epsilon`].
    pub fn get_epsilon(&self) -> Duration {
        self.epsilon
    }

    /// See [`LeaseConfig::max_leases_for_worker`].
    pub fn get_max_leases_for_worker(&self) -> usize {
        self.max_leases_for_worker
    }

    /// See [`LeaseConfig::max_leases_to_steal_at_one_time`].
    pub fn get_max_leases_to_steal_at_one_time(&self) -> usize {
        self.max_leases_to_steal_at_one_time
    }

    /// See [`LeaseConfig::enable_priority_lease_assignment`].
    pub fn get_enable_priority_lease_assignment(&self) -> bool {
        self.enable_priority_lease_assignment
    }

    /// See [`LeaseConfig::very_old_lease_multiplier`].
    pub fn get_very_old_lease_multiplier(&self) -> u32 {
        self.very_old_lease_multiplier
    }

    /// How often held leases are renewed: `failover_time / 3 − epsilon`, as in the Java KCL, so
    /// about three renewals fit in one failover time.
    pub fn renew_interval(&self) -> Duration {
        // Whole milliseconds, as the Java KCL computes it.
        let third = Duration::from_millis((self.failover_time.as_millis() / 3) as u64);
        third.saturating_sub(self.epsilon)
    }

    /// How often the taker runs: `(failover_time + epsilon) × 2`, as in the Java KCL.
    pub fn take_interval(&self) -> Duration {
        (self.failover_time + self.epsilon) * 2
    }

    /// After this long without a counter change a lease is "very old"
    /// (`very_old_lease_multiplier × failover_time`).
    pub fn very_old_lease_age(&self) -> Duration {
        self.failover_time * self.very_old_lease_multiplier
    }

    /// Sets an option from its KCL name (`failoverTimeMillis`, `epsilonMillis`,
    /// `maxLeasesForWorker`, `maxLeasesToStealAtOneTime`, `enablePriorityLeaseAssignment`,
    /// `veryOldLeaseDurationMultiplier`) and a string value; durations in milliseconds.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let number = |min: u64, max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| invalid(&format!("expected an integer in {min}..={max}")))
        };
        match key {
            "failoverTimeMillis" => {
                self.failover_time = Duration::from_millis(number(100, u32::MAX as u64)?)
            }
            "epsilonMillis" => self.epsilon = Duration::from_millis(number(0, 60_000)?),
            "maxLeasesForWorker" => {
                // The Java KCL's "unlimited" is Integer.MAX_VALUE.
                let n = number(1, u64::MAX)?;
                self.max_leases_for_worker = if n >= i32::MAX as u64 {
                    usize::MAX
                } else {
                    n as usize
                };
            }
            "maxLeasesToStealAtOneTime" => {
                self.max_leases_to_steal_at_one_time = number(1, i32::MAX as u64)? as usize
            }
            "enablePriorityLeaseAssignment" => {
                self.enable_priority_lease_assignment = match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("expected true or false")),
                }
            }
            "veryOldLeaseDurationMultiplier" => {
                self.very_old_lease_multiplier = number(1, 1_000)? as u32
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Checks the options: a failover time that leaves room for renewals, and limits of at
    /// least 1.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| {
            Err(ConfigError::InvalidValue {
                key: key.to_owned(),
                value,
                reason: reason.to_owned(),
            })
        };
        if self.renew_interval().is_zero() {
            return invalid(
                "failoverTimeMillis",
                self.failover_time.as_millis().to_string(),
                "failover_time / 3 must exceed epsilon",
            );
        }
        if self.max_leases_for_worker == 0 {
            return invalid("maxLeasesForWorker", "0".into(), "at least 1");
        }
        if self.max_leases_to_steal_at_one_time == 0 {
            return invalid("maxLeasesToStealAtOneTime", "0".into(), "at least 1");
        }
        if self.very_old_lease_multiplier == 0 {
            return invalid("veryOldLeaseDurationMultiplier", "0".into(), "at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_java_kcl_defaults() {
        let config = LeaseConfig::default();
        assert_eq!(config.get_failover_time(), Duration::from_secs(10));
        assert_eq!(config.renew_interval(), Duration::from_millis(3_308));
        assert_eq!(config.take_interval(), Duration::from_millis(20_050));
        assert_eq!(config.get_max_leases_for_worker(), usize::MAX);
        assert_eq!(config.get_max_leases_to_steal_at_one_time(), 1);
        assert!(config.get_enable_priority_lease_assignment());
        assert_eq!(config.very_old_lease_age(), Duration::from_secs(30));
        config.validate().unwrap();
    }

    #[test]
    fn set_parses_kcl_keys() {
        let mut config = LeaseConfig::default();
        config.set("maxLeasesForWorker", "2147483647").unwrap();
        assert_eq!(config.get_max_leases_for_worker(), usize::MAX);
        config.set("maxLeasesForWorker", "5").unwrap();
        assert_eq!(config.get_max_leases_for_worker(), 5);
        config
            .set("enablePriorityLeaseAssignment", "FALSE")
            .unwrap();
        assert!(!config.get_enable_priority_lease_assignment());
        assert!(matches!(
            config.set("maxLeasesToStealAtOneTime", "0"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            config.set("failoverTime", "1"),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(
            LeaseConfig::default()
                .failover_time(Duration::from_millis(60))
                .validate()
                .is_err()
        );
    }
}
