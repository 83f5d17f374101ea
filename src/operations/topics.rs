//! `hookstream topics`: the topics under `kafka.topic_prefix`, with their partitions and end
//! offsets, like `rpk topic list`; the internal ones (the readiness canary) only with `--all`.

use super::reader::Lookup;
use crate::configuration::Settings;
use std::io::Write;
use std::time::Duration;

/// Why `topic` is internal — a topic hookstream or the cluster keeps for itself, whose records
/// are no events — or `None` for a topic of events (the dead-letter topic is one: its records
/// are the deliveries that could not be normalized). Internal: `{kafka.topic_prefix}.canary`,
/// where readiness and `config check --connect` write, and the cluster's own topics, whose
/// names start with `_` (`__consumer_offsets`, `_schemas`).
pub(crate) fn internal(settings: &Settings, topic: &str) -> Option<&'static str> {
    let prefix = &settings.kafka.topic_prefix;
    if topic.strip_prefix(prefix.as_str()) == Some(".canary") {
        return Some("readiness canary");
    }
    let ours =
        topic.starts_with(&format!("{prefix}.")) || topic == settings.dead_letter.topic(prefix);
    (!ours && topic.starts_with('_')).then_some("the cluster's own")
}

/// Prints one line per topic under the prefix to `out` (the internal ones only with `all`);
/// returns how many. The cluster has `timeout` to answer, in all. Blocking.
pub fn topics(
    settings: &Settings,
    all: bool,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<usize, String> {
    let prefix = format!("{}.", settings.kafka.topic_prefix);
    let dead_letters = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    let lookup = Lookup::new(&settings.kafka, timeout)?;
    let mut hidden = 0;
    let names: Vec<String> = lookup
        .topic_names()?
        .into_iter()
        .filter(|name| name.starts_with(&prefix) || *name == dead_letters)
        .filter(|name| {
            let shown = all || internal(settings, name).is_none();
            hidden += usize::from(!shown);
            shown
        })
        .collect();
    let write = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| format!("cannot write: {e}"))
    };
    if names.is_empty() {
        let internal = if hidden > 0 {
            format!("; {hidden} internal topic(s) hidden: --all shows them")
        } else {
            String::new()
        };
        write(
            out,
            format!(
                "no topics under {prefix}* on {} (hookstream creates a topic with its first event{internal})",
                crate::configuration::without_userinfo(&settings.kafka.brokers)
            ),
        )?;
        return Ok(0);
    }
    let width = names.iter().map(String::len).max().unwrap_or(0).max(5);
    write(
        out,
        format!(
            "{:<width$}  {:>10}  {:>10}  end offsets",
            "topic", "partitions", "records"
        ),
    )?;
    for name in &names {
        let watermarks = lookup.watermarks(name)?;
        let records: i64 = watermarks.iter().map(|(low, high)| high - low).sum();
        let ends: Vec<String> = watermarks
            .iter()
            .map(|(_, high)| high.to_string())
            .collect();
        let note = if *name == dead_letters {
            "  (dead letters: hookstream dead-letters list)".to_string()
        } else if let Some(why) = internal(settings, name) {
            format!("  (internal: {why})")
        } else {
            String::new()
        };
        write(
            out,
            format!(
                "{name:<width$}  {:>10}  {records:>10}  {}{note}",
                watermarks.len(),
                ends.join(",")
            ),
        )?;
    }
    Ok(names.len())
}

/// What `hookstream topics create` creates, and who may have to create the rest.
#[derive(Debug)]
pub struct Plan {
    /// `{topic_prefix}.`: every topic hookstream writes to but a dead-letter topic configured
    /// elsewhere starts with it.
    pub prefix: String,
    /// The topics the configuration will write to, known up front: each enabled provider's
    /// documented event names, the dead-letter topic (when enabled) and the canary.
    pub topics: Vec<String>,
    /// The dead-letter topic, when enabled and not under the prefix.
    pub dead_letters_elsewhere: Option<String>,
    /// The enabled providers: each may send event names not known up front.
    pub providers: Vec<&'static str>,
}

/// The topics of `settings`, without connecting to anything.
pub fn plan(settings: &Settings) -> Result<Plan, String> {
    let registry = settings.provider_registry().map_err(|e| e.to_string())?;
    let kafka = &settings.kafka;
    let mut topics = Vec::new();
    let mut providers = Vec::new();
    for provider in registry.iter() {
        let secrets = settings.secrets_for(provider).map_err(|e| e.to_string())?;
        if secrets.is_empty() {
            continue;
        }
        providers.push(provider.name());
        for event in provider.known_event_names() {
            topics.push(crate::naming::topic_name(
                &kafka.topic_prefix,
                provider.name(),
                event,
            ));
        }
    }
    let prefix = format!("{}.", kafka.topic_prefix);
    let mut dead_letters_elsewhere = None;
    if settings.dead_letter.enabled {
        let topic = settings.dead_letter.topic(&kafka.topic_prefix);
        if !topic.starts_with(&prefix) {
            dead_letters_elsewhere = Some(topic.clone());
        }
        topics.push(topic);
    }
    topics.push(format!("{}.canary", kafka.topic_prefix));
    let mut seen = std::collections::HashSet::new();
    topics.retain(|topic| seen.insert(topic.clone()));
    Ok(Plan {
        prefix,
        topics,
        dead_letters_elsewhere,
        providers,
    })
}

/// `hookstream topics create --dry-run`: the topics and the ACLs of the service account, as
/// text an operator turns into `kafka-acls` or `rpk acl create` commands.
pub fn print_plan(settings: &Settings, plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    let kafka = &settings.kafka;
    let prefix = &plan.prefix;
    writeln!(
        out,
        "# topics `hookstream topics create` creates ({} partitions, replication factor {}):",
        kafka.topic_partitions, kafka.topic_replication_factor
    )?;
    for topic in &plan.topics {
        writeln!(out, "{topic}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "# ACLs of the service account hookstream runs as (User:hookstream stands for its principal):"
    )?;
    writeln!(
        out,
        "allow WRITE    on topics with the prefix {prefix:?} (resource pattern type prefixed)"
    )?;
    writeln!(
        out,
        "allow DESCRIBE on topics with the prefix {prefix:?} (resource pattern type prefixed)"
    )?;
    if let Some(topic) = &plan.dead_letters_elsewhere {
        writeln!(
            out,
            "allow WRITE    on the topic {topic:?} (resource pattern type literal)"
        )?;
        writeln!(
            out,
            "allow DESCRIBE on the topic {topic:?} (resource pattern type literal)"
        )?;
    }
    writeln!(
        out,
        "allow CREATE   on topics with the prefix {prefix:?} (resource pattern type prefixed): only if hookstream is to create topics itself"
    )?;
    writeln!(out)?;
    let senders = if plan.providers.is_empty() {
        String::new()
    } else {
        format!(
            " ({} may send undocumented or free-form names)",
            plan.providers.join(", ")
        )
    };
    for line in [
        "# Without CREATE, hookstream writes only to topics that exist: an event whose topic does not".to_string(),
        "# is answered 500 produce_failed. Not known up front, so not created above: event names not".to_string(),
        format!("# listed{senders}, and a provider's overflow topic"),
        format!("# ({prefix}PROVIDER.OVERFLOW, once it has kafka.max_topics_per_provider topics): create"),
        "# those as they come, or grant CREATE.".to_string(),
        "# Kafka before 3.0 also needs IDEMPOTENT_WRITE on the cluster (the producer is idempotent).".to_string(),
    ] {
        writeln!(out, "{line}")?;
    }
    writeln!(out)?;
    writeln!(out, "# for example, with kafka-acls:")?;
    let kafka_acls = "kafka-acls --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:hookstream";
    writeln!(
        out,
        "{kafka_acls} --operation Write --operation Describe --topic {prefix} --resource-pattern-type prefixed"
    )?;
    writeln!(
        out,
        "{kafka_acls} --operation Create --topic {prefix} --resource-pattern-type prefixed"
    )?;
    writeln!(out, "# or with rpk:")?;
    writeln!(
        out,
        "rpk acl create --allow-principal User:hookstream --operation write,describe --topic {prefix} --resource-pattern-type prefixed"
    )?;
    writeln!(
        out,
        "rpk acl create --allow-principal User:hookstream --operation create --topic {prefix} --resource-pattern-type prefixed"
    )?;
    Ok(())
}

/// `hookstream topics create`: creates the topics of [`plan`], printing `created` or `exists`
/// for each; `Err` names every topic that could not be created and why.
pub async fn create(settings: &Settings, out: &mut dyn Write) -> Result<(), String> {
    use crate::kafka::TopicCreation;
    let plan = plan(settings)?;
    let outcomes = crate::kafka::create_topics(&settings.kafka, &plan.topics).await?;
    let mut failures = Vec::new();
    for (topic, outcome) in outcomes {
        let line = match &outcome {
            Ok(TopicCreation::Created) => format!("created {topic}"),
            Ok(TopicCreation::Exists) => format!("exists  {topic}"),
            Err(cause) => {
                failures.push(format!("{topic}: {cause}"));
                format!("FAILED  {topic}: {cause}")
            }
        };
        writeln!(out, "{line}").map_err(|e| format!("cannot write: {e}"))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cannot create {} topic(s): {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}
