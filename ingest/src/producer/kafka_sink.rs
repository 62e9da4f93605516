//! The producer's Kafka sink: each record to a topic, keyed by `encounter_id` (flat records:
//! `patient_id`) so one stay's events stay in order within a partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::Sink;
use crate::error::{Error, Result};
use crate::source::kafka::Endpoint;

/// A producer's settings unless the URL or configuration says otherwise: records wait up to
/// 50 ms to be sent together. librdkafka's 5 ms makes a produce request of a few records at a
/// time, and a broker stores (and a consumer fetches) each request's records as one batch.
const PRODUCER_DEFAULTS: [(&str, &str); 1] = [("linger.ms", "50")];

/// Counts deliveries that failed for good (after librdkafka's retries).
#[derive(Debug, Default)]
struct Deliveries {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "a record was not delivered");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends records to a Kafka topic (idempotent producer: retries never duplicate).
pub struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    topic: String,
    failed: Arc<AtomicU64>,
    sent: u64,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer for `endpoint`'s topic; `overrides` are librdkafka properties.
    pub fn new(endpoint: &Endpoint, overrides: &BTreeMap<String, String>) -> Result<Self> {
        let config = producer_config(endpoint, overrides);
        let deliveries = Deliveries::default();
        let failed = deliveries.failed.clone();
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(deliveries)
            .map_err(|e| Error::Source(format!("kafka: creating the producer: {e}")))?;
        Ok(Self {
            producer,
            topic: endpoint.topic.clone(),
            failed,
            sent: 0,
        })
    }
}

/// The producer's client configuration: [`PRODUCER_DEFAULTS`], then the URL's and the
/// configuration's properties, then idempotence (retries must never duplicate a record).
fn producer_config(endpoint: &Endpoint, overrides: &BTreeMap<String, String>) -> ClientConfig {
    endpoint.client_config(
        &PRODUCER_DEFAULTS,
        overrides,
        &[("enable.idempotence", "true")],
    )
}

/// The key that keeps a stay's events in one partition: `encounter_id`, else `patient_id`.
fn key(record: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(record).ok()?;
    ["encounter_id", "patient_id"]
        .iter()
        .find_map(|k| value.get(*k).and_then(|v| v.as_str()).map(str::to_string))
}

impl Sink for KafkaSink {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        let key = key(record);
        loop {
            let mut message = BaseRecord::to(&self.topic).payload(record);
            if let Some(k) = &key {
                message = message.key(k.as_str());
            }
            match self.producer.send(message) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(Error::Source(format!(
                        "kafka: sending to {}: {e}",
                        self.topic
                    )));
                }
            }
        }
        self.sent += 1;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<String>> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(|e| Error::Source(format!("kafka: flushing to {}: {e}", self.topic)))?;
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(Error::Source(format!(
                "kafka: {failed} of {} records were not delivered to {}",
                self.sent, self.topic
            )));
        }
        Ok(vec![format!("kafka topic {}", self.topic)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_keyed_by_encounter_then_patient() {
        assert_eq!(
            key(br#"{"encounter_id":"E1","patient_id":"P1"}"#).as_deref(),
            Some("E1")
        );
        assert_eq!(key(br#"{"patient_id":"P1"}"#).as_deref(), Some("P1"));
        assert_eq!(key(b"{not json"), None);
    }

    #[test]
    fn records_wait_50_ms_to_be_sent_together_unless_configured_otherwise() {
        let endpoint = Endpoint::parse("kafka://127.0.0.1:9092/adt", |_| None).unwrap();
        let config = producer_config(&endpoint, &BTreeMap::new());
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        let overrides = BTreeMap::from([
            ("linger.ms".to_string(), "5".to_string()),
            ("enable.idempotence".to_string(), "false".to_string()),
        ]);
        let config = producer_config(&endpoint, &overrides);
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}
