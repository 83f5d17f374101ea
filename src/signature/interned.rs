//! Values that live as long as the process, made once per distinct value.
//!
//! A provider defined in configuration is compiled into the same `&'static` shapes as a built-in
//! (names, header lists, signed-content templates), so the request path holds it without
//! reference counting. Interning keeps that bounded: loading the same configuration again (a
//! check, then the server; every test app) allocates nothing new, and every value stays
//! reachable from here.

use super::Part;
use parking_lot::{const_mutex, Mutex};
use std::collections::BTreeSet;

static STRINGS: Mutex<BTreeSet<&'static str>> = const_mutex(BTreeSet::new());
static NAME_LISTS: Mutex<Vec<&'static [&'static str]>> = const_mutex(Vec::new());
static TEMPLATES: Mutex<Vec<&'static [Part]>> = const_mutex(Vec::new());

/// `text`, for the rest of the process.
pub fn str(text: &str) -> &'static str {
    let mut strings = STRINGS.lock();
    if let Some(existing) = strings.get(text) {
        return existing;
    }
    let made: &'static str = Box::leak(text.to_string().into_boxed_str());
    strings.insert(made);
    made
}

/// A list of interned names, for the rest of the process.
pub fn names(list: Vec<&'static str>) -> &'static [&'static str] {
    let mut lists = NAME_LISTS.lock();
    if let Some(existing) = lists.iter().find(|l| **l == list.as_slice()) {
        return existing;
    }
    let made: &'static [&'static str] = Box::leak(list.into_boxed_slice());
    lists.push(made);
    made
}

/// A signed-content template, for the rest of the process.
pub fn template(parts: Vec<Part>) -> &'static [Part] {
    let mut templates = TEMPLATES.lock();
    if let Some(existing) = templates.iter().find(|t| **t == parts.as_slice()) {
        return existing;
    }
    let made: &'static [Part] = Box::leak(parts.into_boxed_slice());
    templates.push(made);
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_is_made_once() {
        let a = str(&String::from("x-acme-signature"));
        let b = str("x-acme-signature");
        assert!(std::ptr::eq(a, b));
        let l = names(vec![a, "y"]);
        assert!(std::ptr::eq(l, names(vec![b, "y"])));
        let t = template(vec![Part::Body]);
        assert!(std::ptr::eq(t, template(vec![Part::Body])));
    }
}
