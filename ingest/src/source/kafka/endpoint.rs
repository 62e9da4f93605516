//! Where a Kafka stream is and how to reach it: `kafka://HOST:PORT/TOPIC`, or
//! `eventhubs://NAMESPACE/HUB` with Azure Event Hubs' Kafka endpoint and Microsoft's
//! recommended client settings. Any librdkafka property can be added or overridden from
//! configuration (`[kafka]`).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// The environment variable holding an Event Hubs connection string (a secret).
pub const EVENTHUBS_CONNECTION_STRING: &str = "PATIENTFLOW_EVENTHUBS_CONNECTION_STRING";

/// Properties whose values are secrets: never logged or printed.
const SECRET_PROPERTIES: [&str; 4] = [
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.keystore.password",
];

/// Microsoft's recommended librdkafka settings for Event Hubs.
const EVENTHUBS_SETTINGS: [(&str, &str); 6] = [
    ("socket.keepalive.enable", "true"),
    ("metadata.max.age.ms", "180000"),
    ("session.timeout.ms", "30000"),
    ("heartbeat.interval.ms", "3000"),
    ("max.poll.interval.ms", "300000"),
    ("request.timeout.ms", "60000"),
];

/// A topic on a Kafka-protocol broker, with the client properties to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic (an Event Hubs hub).
    pub topic: String,
    /// librdkafka properties the URL implies (security, the Event Hubs settings).
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("properties", &redacted(&self.properties))
            .finish()
    }
}

/// `properties` with secret values replaced, for logs and messages.
pub fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    properties
        .iter()
        .map(|(k, v)| {
            let v = if SECRET_PROPERTIES.contains(&k.as_str()) {
                "<redacted>".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl Endpoint {
    /// Parses `kafka://HOST:PORT[,HOST:PORT…]/TOPIC` or `eventhubs://NAMESPACE/HUB`; `env`
    /// looks up environment variables (the Event Hubs connection string).
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "`{url}`: {why}; use kafka://HOST:PORT/TOPIC or eventhubs://NAMESPACE/HUB"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let (host, topic) = rest
            .split_once('/')
            .filter(|(h, t)| !h.is_empty() && !t.is_empty() && !t.contains('/'))
            .ok_or_else(|| invalid("expected a host and one topic"))?;
        let mut properties = BTreeMap::new();
        let brokers = match scheme {
            "kafka" => host.to_string(),
            "eventhubs" => {
                let connection = env(EVENTHUBS_CONNECTION_STRING).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "`{url}` needs the Event Hubs connection string in \
                         {EVENTHUBS_CONNECTION_STRING} (Shared access policies → connection \
                         string–primary key); for Entra ID instead, use kafka://{}:9093/{topic} \
                         with sasl.mechanism = \"OAUTHBEARER\" in [kafka] (docs/streaming.md)",
                        eventhubs_host(host)
                    ))
                })?;
                for (k, v) in [
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.username", "$ConnectionString"),
                ]
                .into_iter()
                .chain(EVENTHUBS_SETTINGS)
                {
                    properties.insert(k.to_string(), v.to_string());
                }
                properties.insert("sasl.password".into(), connection);
                format!("{}:9093", eventhubs_host(host))
            }
            other => return Err(invalid(&format!("unknown scheme `{other}`"))),
        };
        Ok(Self {
            brokers,
            topic: topic.to_string(),
            properties,
        })
    }

    /// The client configuration: `defaults`, then the URL's properties, then `overrides`
    /// (configuration's `[kafka]`), then `fixed` (what patientflow's exactly-once design
    /// needs), each over the ones before.
    pub fn client_config(
        &self,
        defaults: &[(&str, &str)],
        overrides: &BTreeMap<String, String>,
        fixed: &[(&str, &str)],
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in self.properties.iter().chain(overrides) {
            config.set(k, v);
        }
        for (k, v) in fixed {
            config.set(*k, *v);
        }
        config
    }
}

/// `NAMESPACE.servicebus.windows.net`, unless a full host name was given.
fn eventhubs_host(namespace: &str) -> String {
    if namespace.contains('.') {
        namespace.to_string()
    } else {
        format!("{namespace}.servicebus.windows.net")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_urls_name_brokers_and_topic() {
        let e = Endpoint::parse("kafka://127.0.0.1:9092,127.0.0.1:9093/adt", |_| None).unwrap();
        assert_eq!(e.brokers, "127.0.0.1:9092,127.0.0.1:9093");
        assert_eq!(e.topic, "adt");
        assert!(e.properties.is_empty());
        for bad in [
            "kafka://host",
            "kafka:///t",
            "kafka://h/a/b",
            "http://h/t",
            "h/t",
        ] {
            assert!(Endpoint::parse(bad, |_| None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_event_hubs_preset_is_microsofts_configuration_and_keeps_the_secret_out_of_logs() {
        let secret = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t";
        let e = Endpoint::parse("eventhubs://contoso/adt-events", |name| {
            (name == EVENTHUBS_CONNECTION_STRING).then(|| secret.to_string())
        })
        .unwrap();
        assert_eq!(e.brokers, "contoso.servicebus.windows.net:9093");
        assert_eq!(e.topic, "adt-events");
        let config = e.client_config(
            &[("fetch.wait.max.ms", "100"), ("request.timeout.ms", "1")],
            &BTreeMap::from([("client.id".to_string(), "site-a".to_string())]),
            &[("group.id", "g")],
        );
        for (k, v) in [
            ("bootstrap.servers", "contoso.servicebus.windows.net:9093"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "$ConnectionString"),
            ("sasl.password", secret),
            ("socket.keepalive.enable", "true"),
            ("metadata.max.age.ms", "180000"),
            ("session.timeout.ms", "30000"),
            ("heartbeat.interval.ms", "3000"),
            ("max.poll.interval.ms", "300000"),
            ("request.timeout.ms", "60000"),
            ("fetch.wait.max.ms", "100"),
            ("client.id", "site-a"),
            ("group.id", "g"),
        ] {
            assert_eq!(config.get(k), Some(v), "{k}");
        }
        let shown = format!("{e:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn event_hubs_without_a_connection_string_says_what_to_set() {
        let err = Endpoint::parse("eventhubs://contoso/adt", |_| None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(EVENTHUBS_CONNECTION_STRING), "{msg}");
        assert!(msg.contains("OAUTHBEARER"), "{msg}");
    }
}
