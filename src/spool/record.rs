//! A spooled record: everything needed to write it to Kafka later, exactly as it would have been
//! written now — topic, key, framed value, headers — plus what the forwarder needs to know.

/// The payload's layout version (the first byte).
const VERSION: u8 = 1;

/// One record waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpooledRecord {
    /// When it was spooled, epoch milliseconds (the `hookstream-spooled-at` header).
    pub spooled_at: i64,
    /// A first write to Kafka was still in flight when it was spooled: after a crash its outcome
    /// is unknown, and forwarding it may duplicate it.
    pub first_attempt: bool,
    /// Metric label.
    pub provider: String,
    /// `None` for a dead letter (not counted as a produced event).
    pub event_name: Option<String>,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
    }
}

/// Reads fields off the front of a payload; `None` once it is malformed.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Some(u32::from_le_bytes(word))
    }
    fn i64(&mut self) -> Option<i64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Some(i64::from_le_bytes(word))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_string)
    }
    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.bytes().map(Some),
            _ => None,
        }
    }
}

/// The header every record that went through the spool carries: when it was spooled (RFC 3339).
pub(crate) const HEADER_SPOOLED_AT: &str = "hookstream-spooled-at";

impl SpooledRecord {
    /// A record spooled now, with the headers it would have had and [`HEADER_SPOOLED_AT`].
    pub(crate) fn new(
        provider: &str,
        event_name: Option<&str>,
        topic: &str,
        key: Option<&str>,
        value: Vec<u8>,
        headers: &[(&str, &[u8])],
        first_attempt: bool,
    ) -> SpooledRecord {
        let now = chrono::Utc::now();
        let mut all: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.to_vec()))
            .collect();
        all.push((
            HEADER_SPOOLED_AT.to_string(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into_bytes(),
        ));
        SpooledRecord {
            spooled_at: now.timestamp_millis(),
            first_attempt,
            provider: provider.to_string(),
            event_name: event_name.map(str::to_string),
            topic: topic.to_string(),
            key: key.map(|k| k.as_bytes().to_vec()),
            value,
            headers: all,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.topic.len() + self.value.len());
        out.push(VERSION);
        out.extend_from_slice(&self.spooled_at.to_le_bytes());
        out.push(u8::from(self.first_attempt));
        put_bytes(&mut out, self.provider.as_bytes());
        put_optional(&mut out, self.event_name.as_deref().map(str::as_bytes));
        put_bytes(&mut out, self.topic.as_bytes());
        put_optional(&mut out, self.key.as_deref());
        put_bytes(&mut out, &self.value);
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (name, value) in &self.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value);
        }
        out
    }

    /// `None` for a payload that is not a record of this version (its checksum passed, so it was
    /// written so: a record of a newer version, kept aside like damage).
    pub(crate) fn decode(payload: &[u8]) -> Option<SpooledRecord> {
        let mut r = Cursor(payload);
        if r.byte()? != VERSION {
            return None;
        }
        let spooled_at = r.i64()?;
        let first_attempt = r.byte()? == 1;
        let provider = r.text()?;
        let event_name = match r.optional()? {
            None => None,
            Some(b) => Some(std::str::from_utf8(b).ok()?.to_string()),
        };
        let topic = r.text()?;
        let key = r.optional()?.map(<[u8]>::to_vec);
        let value = r.bytes()?.to_vec();
        let count = r.u32()? as usize;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            headers.push((r.text()?, r.bytes()?.to_vec()));
        }
        r.0.is_empty().then_some(SpooledRecord {
            spooled_at,
            first_attempt,
            provider,
            event_name,
            topic,
            key,
            value,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_truncations_are_refused() {
        let record = SpooledRecord {
            spooled_at: 1_700_000_000_123,
            first_attempt: true,
            provider: "livesession".into(),
            event_name: Some("js_error".into()),
            topic: "webhooks.livesession.js_error".into(),
            key: Some(b"visitor-1".to_vec()),
            value: vec![0, 1, 2, 255],
            headers: vec![("hookstream-event-id".into(), b"e-1".to_vec())],
        };
        let bytes = record.encode();
        assert_eq!(SpooledRecord::decode(&bytes), Some(record.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(SpooledRecord::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let letter = SpooledRecord {
            event_name: None,
            key: None,
            headers: Vec::new(),
            ..record
        };
        assert_eq!(SpooledRecord::decode(&letter.encode()), Some(letter));
    }
}
