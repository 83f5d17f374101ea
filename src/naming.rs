//! Event names and topic names.
//!
//! Vendors name events in CamelCase (`JSError`), snake_case (`user_login`) or versioned kebab-case
//! (`livesend-session-summary-v3`). Downstream consumers get one convention: snake_case limited to
//! `[a-z0-9_-]`. A `.` becomes `_` too: Kafka treats `.` and `_` in topic names as colliding
//! (their metric names would be equal), so `screen.view` and `screen_view` share one topic rather
//! than the second one failing to be created.

/// Longest event name kept; topic names are limited to 249 characters by Kafka.
pub const MAX_EVENT_NAME_LEN: usize = 120;

/// Converts a vendor's event name to snake_case: word boundaries in CamelCase become `_`
/// (`JSError` → `js_error`), letters are lowercased, and any character outside `[a-z0-9_-]`
/// becomes `_`. The result is at most [`MAX_EVENT_NAME_LEN`] characters, and the work is bounded
/// whatever the input's length.
pub fn snake_case(name: &str) -> String {
    // Each input character yields at least one output character.
    let chars: Vec<char> = name.trim().chars().take(MAX_EVENT_NAME_LEN + 1).collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower);
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
        }
        for lower in c.to_lowercase() {
            out.push(if is_topic_char(lower) { lower } else { '_' });
        }
    }
    out.chars().take(MAX_EVENT_NAME_LEN).collect()
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')
}

/// `{prefix}.{provider}.{event_name}`.
pub fn topic_name(prefix: &str, provider: &str, event_name: &str) -> String {
    format!("{prefix}.{provider}.{event_name}")
}

/// Whether `prefix` can start a Kafka topic name: 1–100 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_topic_prefix(prefix: &str) -> bool {
    (1..=100).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn livesession_event_names_become_snake_case() {
        let cases = [
            ("JSError", "js_error"),
            ("NetError", "net_error"),
            ("ErrorClick", "error_click"),
            ("RageClick", "rage_click"),
            ("Custom", "custom"),
            ("Error", "error"),
            ("MouseClick", "mouse_click"),
            ("NetLog", "net_log"),
        ];
        for (input, expected) in cases {
            assert_eq!(snake_case(input), expected, "{input}");
        }
    }

    #[test]
    fn snake_case_names_are_unchanged() {
        for name in ["user_login", "content_view_activity", "home_cta_click"] {
            assert_eq!(snake_case(name), name);
        }
    }

    #[test]
    fn characters_outside_the_topic_alphabet_become_underscores() {
        assert_eq!(snake_case("Product added!"), "product_added_");
        assert_eq!(snake_case("a/b:c"), "a_b_c");
        assert_eq!(snake_case("zażółć"), "za____");
        assert_eq!(snake_case("v1.page-view"), "v1_page-view");
    }

    #[test]
    fn names_that_kafka_would_see_as_colliding_share_a_topic() {
        assert_eq!(snake_case("screen.view"), snake_case("screen_view"));
        assert!(!snake_case("a.b.c").contains('.'));
    }

    #[test]
    fn digits_and_acronyms_split_where_a_reader_would() {
        assert_eq!(snake_case("HTTPServerError"), "http_server_error");
        assert_eq!(snake_case("Error404Page"), "error404_page");
    }

    #[test]
    fn long_names_are_capped() {
        let long = "A".repeat(500);
        assert_eq!(snake_case(&long).len(), MAX_EVENT_NAME_LEN);
    }

    #[test]
    fn topic_prefix_validation() {
        assert!(is_valid_topic_prefix("webhooks"));
        assert!(is_valid_topic_prefix("prod.webhooks-v2"));
        assert!(!is_valid_topic_prefix(""));
        assert!(!is_valid_topic_prefix("web hooks"));
        assert_eq!(
            topic_name("webhooks", "livesession", "js_error"),
            "webhooks.livesession.js_error"
        );
    }
}
