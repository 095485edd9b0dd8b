//! Bounded, redacted summaries of what an agent did (tool inputs, tool results, text), for
//! events: secrets hidden with the rules of [`crate::redact`], length cut at a char boundary.

use serde_json::Value;

/// Most characters of a tool input summary.
pub const TOOL_INPUT_CHARS: usize = 1000;
/// Most characters of a tool result excerpt.
pub const TOOL_RESULT_CHARS: usize = 1000;
/// Most characters of one text event.
pub const TEXT_CHARS: usize = 8000;
/// Most characters of a status line.
pub const STATUS_CHARS: usize = 500;

/// `text` with secrets hidden, cut to `max` characters (an ellipsis and the count of what was
/// cut mark a cut).
pub fn bounded(text: &str, max: usize) -> String {
    let redacted = crate::redact::text(text);
    cut(&redacted, max)
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => {
            let rest = text[at..].chars().count();
            format!("{}… ({rest} more characters)", &text[..at])
        }
    }
}

/// A one-line summary of a tool's input: the command, path or pattern the tool is about when
/// it has one, else the input as compact JSON; values of secret-named keys hidden, bounded.
pub fn tool_input(input: &Value) -> String {
    let hidden = hide_secret_values(input);
    for key in ["command", "file_path", "path", "pattern", "url", "query"] {
        if let Some(s) = hidden.get(key).and_then(Value::as_str) {
            return bounded(s, TOOL_INPUT_CHARS);
        }
    }
    let json = match &hidden {
        Value::Null => String::new(),
        v => v.to_string(),
    };
    bounded(&json, TOOL_INPUT_CHARS)
}

/// A copy of `v` with the string values of secret-named keys (`API_KEY`, `password`, ...)
/// replaced by the mask (also used for the input summaries of permission requests).
pub fn hide_secret_values(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if crate::redact::is_secret_name(k) && !v.is_object() {
                        Value::String(crate::redact::MASK.to_string())
                    } else {
                        hide_secret_values(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(hide_secret_values).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_hide_secrets_and_stay_bounded() {
        assert_eq!(tool_input(&json!({"command": "echo hi"})), "echo hi");
        assert_eq!(
            tool_input(&json!({"command": "API_KEY=sk-abcdefabcdefabcdef123 run"})),
            "API_KEY=*** run"
        );
        let s = tool_input(&json!({"env": {"GITHUB_TOKEN": "ghp_x"}, "n": 1}));
        assert!(s.contains("***") && !s.contains("ghp_x"), "{s}");
        let long = "x".repeat(5000);
        let s = bounded(&long, 100);
        assert!(s.starts_with(&"x".repeat(100)) && s.ends_with("(4900 more characters)"));
        assert_eq!(
            bounded("é".repeat(3).as_str(), 2),
            "éé… (1 more characters)"
        );
    }
}
