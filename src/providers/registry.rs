//! The providers one configuration serves: the built-ins and those it defines.

use super::{configured, Provider, BUILT_IN};
use std::fmt;

/// Every provider of one configuration, looked up by name.
///
/// Configured providers are compiled once, when a configuration is loaded, and live as long as
/// the process (`&'static`, like the built-ins): the request path, metric labels and write tasks
/// hold them without reference counting. A configuration reloaded while serving compiles only the
/// definitions that changed ([`Registry::reusing`]): what a changed definition leaves behind is
/// kept until the process ends, a few kilobytes per change.
#[derive(Clone)]
pub struct Registry {
    providers: Vec<&'static dyn Provider>,
    /// The definition each configured provider was compiled from.
    definitions: Vec<(&'static dyn Provider, configured::Definition)>,
}

/// A provider definition that cannot be served, naming the configuration key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}` {problem}")]
pub struct DefinitionError {
    /// The full key, e.g. `providers.acme.fields.event_id`.
    pub key: String,
    pub problem: String,
}

impl Registry {
    /// The built-in providers alone.
    pub fn built_in() -> Self {
        Self {
            providers: BUILT_IN.to_vec(),
            definitions: Vec::new(),
        }
    }

    /// The built-ins and the providers `definitions` define (name, definition). A name that
    /// is not a valid topic part, or is a built-in's, is refused.
    pub fn with_definitions<'d>(
        definitions: impl IntoIterator<Item = (&'d str, &'d configured::Definition)>,
    ) -> Result<Self, DefinitionError> {
        Self::built_in().reusing(definitions)
    }

    /// The built-ins and the providers `definitions` define, taking from this registry those
    /// defined exactly as before instead of compiling them again.
    pub fn reusing<'d>(
        &self,
        definitions: impl IntoIterator<Item = (&'d str, &'d configured::Definition)>,
    ) -> Result<Self, DefinitionError> {
        let mut registry = Self::built_in();
        for (name, definition) in definitions {
            let before = self
                .definitions
                .iter()
                .find(|(p, d)| p.name() == name && d == definition)
                .map(|(p, _)| *p);
            let provider = match before {
                Some(provider) => provider,
                None => {
                    let compiled = configured::Configured::compile(name, definition)?;
                    Box::leak(Box::new(compiled)) as &'static dyn Provider
                }
            };
            registry.providers.push(provider);
            registry.definitions.push((provider, definition.clone()));
        }
        Ok(registry)
    }

    pub fn find(&self, name: &str) -> Option<&'static dyn Provider> {
        self.providers.iter().copied().find(|p| p.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static dyn Provider> + '_ {
        self.providers.iter().copied()
    }

    /// Every name, built-ins first.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|p| p.name()).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::built_in()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
