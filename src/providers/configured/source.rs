//! Where a field's value comes from: a JSON pointer into the body, a request header, or a
//! constant.

use super::super::Request;
use serde_json::Value;

/// One parsed source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An RFC 6901 JSON pointer, e.g. `/data/object/id`.
    Pointer(String),
    /// A request header, by lowercase name.
    Header(&'static str),
    /// The same value for every delivery.
    Const(String),
}

/// What a source found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'a> {
    Json(&'a Value),
    Text(&'a str),
}

impl Source {
    /// Parses `/pointer`, `header:NAME` or `const:VALUE`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim().to_ascii_lowercase();
            if !crate::signature::is_header_name(&name) {
                return Err(format!("{text:?} does not name a valid header"));
            }
            return Ok(Source::Header(crate::signature::interned::str(&name)));
        }
        if let Some(value) = text.strip_prefix("const:") {
            return Ok(Source::Const(value.to_string()));
        }
        check_pointer(text)?;
        Ok(Source::Pointer(text.to_string()))
    }

    /// The value in `request`, if any.
    pub fn find<'a>(&'a self, request: &Request<'a>) -> Option<Found<'a>> {
        match self {
            Source::Pointer(pointer) => pointer_in(request, pointer).map(Found::Json),
            Source::Header(name) => request.header(name).map(Found::Text),
            Source::Const(value) => Some(Found::Text(value)),
        }
    }

    /// A pointer's last token (the attribute key of a scalar subtree).
    pub fn last_token(&self) -> String {
        match self {
            Source::Pointer(p) => unescape(p.rsplit('/').next().unwrap_or_default()).into_owned(),
            Source::Header(h) => (*h).to_string(),
            Source::Const(_) => String::new(),
        }
    }

    /// How a source is written, for errors that name it.
    pub fn describe(&self) -> String {
        match self {
            Source::Pointer(p) => p.clone(),
            Source::Header(h) => format!("header {h}"),
            Source::Const(_) => "a constant".to_string(),
        }
    }
}

fn pointer_in<'a>(request: &Request<'a>, pointer: &str) -> Option<&'a Value> {
    let mut tokens = pointer.split('/');
    tokens.next();
    let mut value: Option<&'a Value> = None;
    let body = request.body;
    for (i, token) in tokens.enumerate() {
        let token = unescape(token);
        value = if i == 0 {
            body.get(token.as_ref())
        } else {
            match value? {
                Value::Object(map) => map.get(token.as_ref()),
                Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            }
        };
        value?;
    }
    value
}

fn unescape(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// RFC 6901: empty, or `/`-separated tokens in which `~` is always `~0` or `~1`. The whole
/// document (the empty pointer) is refused: no field is the whole body.
pub fn check_pointer(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!(
            "{text:?} is not a source: write a JSON pointer (\"/data/id\"), \"header:NAME\" or \"const:VALUE\""
        ));
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{text:?} is not a valid JSON pointer: '~' must be followed by 0 or 1"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_parse_or_say_why_not() {
        assert_eq!(
            Source::parse("/data/id"),
            Ok(Source::Pointer("/data/id".into()))
        );
        assert_eq!(
            Source::parse("header:X-GitHub-Event"),
            Ok(Source::Header("x-github-event"))
        );
        assert_eq!(
            Source::parse("const:order"),
            Ok(Source::Const("order".into()))
        );
        assert!(Source::parse("data.id")
            .unwrap_err()
            .contains("JSON pointer"));
        assert!(Source::parse("/a~2b").unwrap_err().contains("'~'"));
        assert!(Source::parse("/a~").unwrap_err().contains("'~'"));
        assert!(Source::parse("header:").is_err());
        assert!(Source::parse("header:bad name").is_err());
        assert!(Source::parse("").is_err());
    }

    #[test]
    fn pointers_follow_objects_arrays_and_escapes() {
        let body = json!({"a": {"b/c": [10, {"d~e": "x"}]}});
        let map = body.as_object().expect("object");
        let headers = [("x-id".to_string(), "h".to_string())];
        let request = Request {
            raw: "",
            body: map,
            headers: &headers,
        };
        let find = |s: &str| {
            let source = Source::parse(s).expect("parses");
            match source.find(&request) {
                Some(Found::Json(v)) => Some(v.clone()),
                Some(Found::Text(t)) => Some(json!({ "text": t })),
                None => None,
            }
        };
        assert_eq!(find("/a/b~1c/0"), Some(json!(10)));
        assert_eq!(find("/a/b~1c/1/d~0e"), Some(json!("x")));
        assert_eq!(find("/a/b~1c/2"), None);
        assert_eq!(find("/a/b~1c/x"), None);
        assert_eq!(find("/a/b~1c/0/deeper"), None);
        assert_eq!(find("header:X-Id"), Some(json!({"text": "h"})));
        assert_eq!(find("header:x-other"), None);
        assert_eq!(find("const:k"), Some(json!({"text": "k"})));
    }
}
