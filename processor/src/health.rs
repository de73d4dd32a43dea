//! Readiness: each component reports its state; `/readyz` is 200 only when all are well.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::telemetry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// The NATS connection and the input stream.
    Nats,
    /// The input consumer, set up at the committed position.
    Consumer,
    /// The state store accepting commits.
    Store,
    /// The outbox publisher reaching the output streams.
    Outbox,
    /// The ERP webhook reaching the ERP (only when `[erp.webhook]` is configured).
    Webhook,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Nats => "nats",
            Component::Consumer => "consumer",
            Component::Store => "store",
            Component::Outbox => "outbox",
            Component::Webhook => "webhook",
        }
    }
}

/// Starts not ready: the consumer has to be set up first.
#[derive(Debug)]
pub struct Health {
    problems: Mutex<BTreeMap<Component, String>>,
}

impl Default for Health {
    fn default() -> Self {
        let mut problems = BTreeMap::new();
        problems.insert(Component::Consumer, "starting: the input consumer is not set up yet".to_string());
        telemetry::ready(false);
        Health { problems: Mutex::new(problems) }
    }
}

impl Health {
    pub fn set(&self, component: Component, state: Result<(), String>) {
        // A poisoned lock means a panic elsewhere while holding it; the map is still usable.
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Ok(()) => problems.remove(&component),
            Err(reason) => problems.insert(component, reason),
        };
        telemetry::ready(problems.is_empty());
    }

    /// `Ok` when ready, else each unwell component with its reason.
    pub fn check(&self) -> Result<(), BTreeMap<&'static str, String>> {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.iter().map(|(c, r)| (c.name(), r.clone())).collect())
        }
    }
}
