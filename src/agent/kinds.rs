//! The adapter of each agent kind. The kinds themselves (their `agent` names and the team
//! options each takes) are listed once, in [`crate::config::kinds::AGENT_KINDS`]; this maps
//! each to its adapter with an exhaustive `match`, so a kind without an adapter does not build.

use super::adapter::AgentAdapter;
use crate::config::kinds::{self, KindId};

/// The adapter of kind `id`.
pub fn adapter(id: KindId) -> &'static dyn AgentAdapter {
    match id {
        KindId::Claude => &super::claude::ClaudeCode,
        KindId::Codex => &super::codex::Codex,
        KindId::Gemini => &super::gemini::Gemini,
    }
}

/// The adapter for a team's `agent` value; `None` for a kind Switchboard does not know (the
/// teams file's check refuses those, so only a config built by hand gets here).
pub fn adapter_for(agent: &str) -> Option<&'static dyn AgentAdapter> {
    kinds::kind(agent).map(|k| adapter(k.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_adapter_of_its_name() {
        for kind in kinds::AGENT_KINDS {
            assert_eq!(adapter(kind.id).name(), kind.name);
        }
        assert!(adapter_for("nonesuch").is_none());
    }
}
