//! How the sections of `/metrics` write a scrape: a section is a prometheus-client
//! [`Collector`] that reads one subsystem of the node, and [`Scrape`] gives the crate's
//! descriptor encoder the few shapes the sections use.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// One counter of a stats struct `S`: the sample's name (ending in `_total`), its help,
/// and how to read it. Each section keeps a table of these, the one place where a
/// counter is named and explained.
pub(crate) type CounterDef<S> = (&'static str, &'static str, fn(&S) -> u64);

/// Reads a counter kept as an atomic.
pub(crate) fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// What writes one section of `T` (a node, a server's own counters) into a scrape.
pub(crate) type Write<T> = fn(&T, &mut Scrape<'_>) -> fmt::Result;

/// One section of `/metrics`: reads one subsystem of `source` at each scrape.
pub(crate) struct Section<T> {
    name: &'static str,
    source: T,
    write: Write<T>,
}

impl<T: Clone> Section<T> {
    /// The section `name` of `source`, written by `write`.
    pub(crate) fn new(name: &'static str, source: &T, write: Write<T>) -> Box<Self> {
        Box::new(Self {
            name,
            source: source.clone(),
            write,
        })
    }
}

impl<T> fmt::Debug for Section<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Section({})", self.name)
    }
}

impl<T: Send + Sync + 'static> Collector for Section<T> {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        (self.write)(&self.source, &mut Scrape(encoder))
    }
}

/// A scrape in progress: metric families go straight to prometheus-client's encoder.
///
/// Counter names are the samples' names, ending in `_total` as the dashboard and the
/// docs write them; the family is named without the suffix, as OpenMetrics wants, and the
/// encoder appends it to the samples.
pub(crate) struct Scrape<'a>(DescriptorEncoder<'a>);

fn family(counter: &str) -> &str {
    counter.strip_suffix("_total").unwrap_or(counter)
}

impl Scrape<'_> {
    /// An unlabelled counter.
    pub(crate) fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let c = ConstCounter::new(value);
        c.encode(
            self.0
                .encode_descriptor(family(name), help, None, MetricType::Counter)?,
        )
    }

    /// Every counter of `table`, read from `stats`.
    pub(crate) fn table<S>(&mut self, stats: &S, table: &[CounterDef<S>]) -> fmt::Result {
        for (name, help, read) in table {
            self.counter(name, help, read(stats))?;
        }
        Ok(())
    }

    /// A counter family with one label: `(label value, count)` per series.
    pub(crate) fn counters<'l>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        series: impl IntoIterator<Item = (&'l str, u64)>,
    ) -> fmt::Result {
        let mut f = self
            .0
            .encode_descriptor(family(name), help, None, MetricType::Counter)?;
        for (value, n) in series {
            ConstCounter::new(n).encode(f.encode_family(&[(label, value)])?)?;
        }
        Ok(())
    }

    /// An unlabelled gauge.
    pub(crate) fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: impl EncodeGaugeValue,
    ) -> fmt::Result {
        let g = ConstGauge::new(value);
        g.encode(
            self.0
                .encode_descriptor(name, help, None, MetricType::Gauge)?,
        )
    }

    /// A gauge family: `(labels, value)` per series (none at all is a family without
    /// series).
    pub(crate) fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut f = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in series {
            ConstGauge::new(v).encode(f.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
