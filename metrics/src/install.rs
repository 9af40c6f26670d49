//! Installing the exporters as the process's `metrics` recorder: CloudWatch, Prometheus, or both
//! through a fan-out.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::layers::FanoutBuilder;

use crate::cloudwatch::{CloudWatchBuilder, PublisherHandle};

/// Why the exporters could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Another `metrics` recorder is installed already (there is one per process).
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The Prometheus endpoint could not be set up (the address in use, say).
    #[error("the Prometheus endpoint on {address} could not start: {reason}")]
    Prometheus {
        /// The address asked for.
        address: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// Nothing to install.
    #[error("no exporter chosen: set a CloudWatch publisher, a Prometheus address, or both")]
    Nothing,
}

/// The exporters to install.
///
/// ```no_run
/// use kinesis_metrics::{CloudWatchBuilder, Exporters, KplMetrics};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = aws_config::load_from_env().await;
/// let cloudwatch = CloudWatchBuilder::new(aws_sdk_cloudwatch::Client::new(&config))
///     .kpl(KplMetrics::default());
/// let installed = Exporters::new()
///     .cloudwatch(cloudwatch)
///     .prometheus("127.0.0.1:9464".parse()?)
///     .install()?;
/// // ... run the producer; then send what is left:
/// if let Some(publisher) = installed.cloudwatch {
///     publisher.shutdown().await;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct Exporters {
    cloudwatch: Option<CloudWatchBuilder>,
    prometheus: Option<SocketAddr>,
}

/// What [`Exporters::install`] started.
#[derive(Debug)]
pub struct Installed {
    /// The CloudWatch publisher, to read its stats and to flush it before the process ends.
    pub cloudwatch: Option<PublisherHandle>,
    /// Where Prometheus scrapes `/metrics`.
    pub prometheus: Option<SocketAddr>,
}

impl Exporters {
    /// No exporter yet.
    pub fn new() -> Self {
        Exporters::default()
    }

    /// Publishes to CloudWatch.
    pub fn cloudwatch(mut self, builder: CloudWatchBuilder) -> Self {
        self.cloudwatch = Some(builder);
        self
    }

    /// Serves every metric for Prometheus on `http://{address}/metrics` (the maintained
    /// `metrics-exporter-prometheus`; names with dots are written with underscores).
    pub fn prometheus(mut self, address: SocketAddr) -> Self {
        self.prometheus = Some(address);
        self
    }

    /// Installs them as the process's recorder.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn install(self) -> Result<Installed, InstallError> {
        let mut fanout = FanoutBuilder::default();
        let mut any = false;
        let mut prometheus = None;
        if let Some(address) = self.prometheus {
            let (recorder, exporter) = PrometheusBuilder::new()
                .with_http_listener(address)
                .build()
                .map_err(|e| InstallError::Prometheus {
                    address,
                    reason: e.to_string(),
                })?;
            tokio::spawn(async move {
                if let Err(error) = exporter.await {
                    tracing::error!(%address, ?error, "the Prometheus endpoint stopped");
                }
            });
            fanout = fanout.add_recorder(recorder);
            prometheus = Some(address);
            any = true;
        }
        let mut cloudwatch = None;
        if let Some(builder) = self.cloudwatch {
            let (recorder, handle) = builder.build();
            fanout = fanout.add_recorder(recorder);
            cloudwatch = Some(handle);
            any = true;
        }
        if !any {
            return Err(InstallError::Nothing);
        }
        metrics::set_global_recorder(fanout.build()).map_err(|_| InstallError::AlreadyInstalled)?;
        Ok(Installed {
            cloudwatch,
            prometheus,
        })
    }
}
