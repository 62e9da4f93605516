//! A Kafka consumer group (Azure Event Hubs through its Kafka endpoint, or any broker) as a
//! followed source.
//!
//! **The truth about what was consumed is in the Delta log**: bronze records one application
//! transaction per topic-partition (`kafka:<topic>:<partition>`, version = the last offset
//! included) in the same commit as the data. When partitions are assigned, each starts at the
//! offset after the one in the log, set on the assignment itself (not by seeking afterwards);
//! before they are revoked the consumer waits for the batch in flight, and a partition no
//! longer owned is never committed by this consumer ([`Ownership`]). Offsets committed to
//! Kafka are for lag monitoring only.

mod endpoint;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

pub use endpoint::{EVENTHUBS_CONNECTION_STRING, Endpoint, redacted};

use super::{Follow, Ownership, Part, PositionLog, Record, Resume, Settled};
use crate::error::{Error, Result};

/// A consumer's settings unless the URL or configuration says otherwise: a fetch waits at
/// most 100 ms for records (librdkafka's 500 ms default is time a micro-batch's records would
/// wait before they are even read, where a broker holds a fetch that long).
const CONSUMER_DEFAULTS: [(&str, &str); 1] = [("fetch.wait.max.ms", "100")];

/// What patientflow's design needs of every consumer, over any configuration.
const CONSUMER_FIXED: [(&str, &str); 4] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "1000"),
];

/// The position id of a topic-partition.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// Rebalances against the Delta log, and the lag librdkafka reports.
struct Context {
    topic: String,
    log: PositionLog,
    ownership: Ownership,
    lag: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        if let Ok(mut lag) = self.lag.lock() {
            for (p, stats) in &topic.partitions {
                if *p >= 0 && stats.consumer_lag >= 0 {
                    lag.insert(*p, stats.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        // Waits for a batch in flight to finish committing.
        let mut owned = self.ownership.blocking_lock();
        let ids: HashSet<String> = tpl
            .elements()
            .iter()
            .map(|e| app_id(e.topic(), e.partition()))
            .collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.start_at_logged(tpl) {
                    // Not assigning makes the group hand the partitions to someone else; this
                    // consumer retries at the next rebalance.
                    tracing::error!(error = %e, "cannot read consumed offsets from the Delta log; not taking partitions");
                    return;
                }
                owned.get_or_insert_with(HashSet::new).extend(ids);
                tracing::info!(partitions = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(), "assigned");
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(?err, "rebalance error; giving up the partitions");
                }
                tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "revoked");
                if let Some(set) = owned.as_mut() {
                    set.retain(|id| !ids.contains(id));
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    owned.take();
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "rebalance assignment failed");
        }
    }
}

impl Context {
    /// Sets every partition of `tpl` to start after the offset bronze's log holds for it.
    fn start_at_logged(&self, tpl: &mut TopicPartitionList) -> Result<()> {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let ids: Vec<String> = parts.iter().map(|(t, p)| app_id(t, *p)).collect();
        for ((topic, partition), logged) in parts.iter().zip(self.log.read(&ids)?) {
            let offset = logged.map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
            tpl.set_partition_offset(topic, *partition, offset)
                .map_err(|e| kafka_error("setting a start offset", e))?;
        }
        Ok(())
    }
}

/// A Kafka topic consumed by a consumer group.
pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    topic: String,
    ownership: Ownership,
    lag: Arc<Mutex<BTreeMap<i32, i64>>>,
    paused: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn kafka_error(what: &str, e: KafkaError) -> Error {
    Error::Source(format!("kafka: {what}: {e}"))
}

impl KafkaSource {
    /// Joins `group` on `endpoint`'s topic; `overrides` are librdkafka properties from
    /// configuration. Partitions start where bronze's Delta log says (`log`).
    pub fn subscribe(
        endpoint: &Endpoint,
        group: &str,
        overrides: &BTreeMap<String, String>,
        log: PositionLog,
    ) -> Result<Self> {
        let mut fixed = vec![("group.id", group)];
        fixed.extend(CONSUMER_FIXED);
        let config = endpoint.client_config(&CONSUMER_DEFAULTS, overrides, &fixed);
        let ownership = Ownership::default();
        let lag = Arc::new(Mutex::new(BTreeMap::new()));
        let context = Context {
            topic: endpoint.topic.clone(),
            log,
            ownership: ownership.clone(),
            lag: lag.clone(),
        };
        let consumer: BaseConsumer<Context> = config
            .create_with_context(context)
            .map_err(|e| kafka_error("creating the consumer", e))?;
        consumer
            .subscribe(&[&endpoint.topic])
            .map_err(|e| kafka_error("subscribing", e))?;
        Ok(Self {
            consumer,
            topic: endpoint.topic.clone(),
            ownership,
            lag,
            paused: false,
        })
    }

    fn set_paused(&mut self, pause: bool) -> Result<()> {
        if self.paused == pause {
            return Ok(());
        }
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| kafka_error("reading the assignment", e))?;
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        result.map_err(|e| kafka_error("pausing or resuming", e))?;
        self.paused = pause;
        Ok(())
    }

    /// Whether this consumer owns `id` now.
    fn owns(&self, id: &str) -> bool {
        self.ownership
            .blocking_lock()
            .as_ref()
            .is_some_and(|ids| ids.contains(id))
    }
}

impl Follow for KafkaSource {
    fn poll(&mut self, wait: Duration, room: usize) -> Result<Vec<Part>> {
        self.set_paused(room == 0)?;
        let mut parts: BTreeMap<i32, Part> = BTreeMap::new();
        let mut read = 0;
        let mut timeout = wait;
        // Messages a paused partition had prefetched still come; they are kept (bounded by
        // librdkafka's queue), never dropped.
        while read < room.max(1) {
            let Some(message) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let message = match message {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consume error");
                    continue;
                }
            };
            let (partition, offset) = (message.partition(), message.offset());
            let part = parts.entry(partition).or_insert_with(|| Part {
                app_id: app_id(message.topic(), partition),
                resume: Resume::Before(offset),
                position: offset,
                source: message.topic().to_string(),
                partition: Some(partition),
                records: Vec::new(),
            });
            part.position = offset;
            // A message without a value is a record of zero bytes: silver quarantines it.
            part.records.push(Record {
                line: offset,
                received_at: chrono::Utc::now().timestamp_micros(),
                produced_at: message.timestamp().to_millis().map(|ms| ms * 1000),
                raw: message.payload().unwrap_or_default().to_vec(),
            });
            read += 1;
        }
        Ok(parts.into_values().collect())
    }

    fn settle(&mut self, settled: &[Settled]) -> Result<()> {
        let mut offsets = TopicPartitionList::new();
        for s in settled {
            let Some(partition) = s.partition else {
                continue;
            };
            if s.committed {
                if let Some(last) = s.logged {
                    offsets
                        .add_partition_offset(&self.topic, partition, Offset::Offset(last + 1))
                        .map_err(|e| kafka_error("recording an offset", e))?;
                }
            } else if self.owns(&s.app_id) {
                // Still ours but the log is elsewhere (another writer): go on from the log.
                let offset = s
                    .logged
                    .map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
                self.consumer
                    .seek(&self.topic, partition, offset, Duration::from_secs(10))
                    .map_err(|e| kafka_error("seeking to the logged offset", e))?;
            }
        }
        if offsets.count() > 0
            && let Err(e) = self.consumer.commit(&offsets, CommitMode::Async)
        {
            // Only lag monitoring depends on it.
            tracing::debug!(error = %e, "committing offsets to kafka failed");
        }
        Ok(())
    }

    fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }

    fn lag(&self) -> Vec<(String, i64)> {
        self.lag
            .lock()
            .map(|lag| {
                lag.iter()
                    .map(|(p, l)| (format!("{}/{p}", self.topic), *l))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn close(&mut self) {
        // Leaves the group (the revoke waits for nothing: no batch is in flight any more).
        self.consumer.unsubscribe();
        for _ in 0..20 {
            if self.consumer.poll(Duration::from_millis(50)).is_none()
                && self.consumer.assignment().map_or(true, |a| a.count() == 0)
            {
                break;
            }
        }
        tracing::info!(topic = %self.topic, "left the consumer group");
    }
}
