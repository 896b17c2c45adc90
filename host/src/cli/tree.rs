//! How the CLI shows a server's tree, a stop's report and a port holder's
//! ancestry, as lines and as JSON. Another process's command line is data:
//! its control characters are escaped before it reaches a terminal.

use serde_json::{Value, json};

use super::commands::kill_name;
use crate::{LineageEntry, PortHolder, Role, StopReport, TreeMember};

pub(crate) use crate::capabilities::log::escape_controls as shown;

/// `PID 4242 (`node vite`)`.
fn named(pid: u32, command: &str) -> String {
    format!("PID {pid} (`{}`)", shown(command))
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Other => "",
        Role::Bengal => ", a Bengal server",
        Role::Claimed => ", the server a pidman claim of this project started",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Other => "other",
        Role::Bengal => "bengal",
        Role::Claimed => "claimed",
    }
}

/// `PID 5002 (`node vite`), child of PID 5001 (`sh -c vite`), child of
/// PID 5000 (`npm run dev`), a Bengal server`.
pub fn lineage_text(holder: &PortHolder) -> String {
    let mut text = String::new();
    for (i, LineageEntry { pid, command, role }) in holder.lineage.iter().enumerate() {
        if i > 0 {
            text.push_str(", child of ");
        }
        text.push_str(&named(*pid, command));
        text.push_str(role_text(*role));
    }
    if let Some(root) = holder.orphan_of {
        text.push_str(&format!(
            ", in the process group of server PID {} that a pidman claim of this project started (gone)",
            root.pid
        ));
    }
    text
}

/// A port holder for `--json`.
pub fn holder_json(holder: &PortHolder) -> Value {
    json!({
        "pid": holder.lineage[0].pid,
        "command": holder.lineage[0].command,
        "listening": holder.listening,
        "lineage": holder.lineage.iter().map(|e| json!({
            "pid": e.pid, "command": e.command, "role": role_name(e.role),
        })).collect::<Vec<_>>(),
        "orphan_of": holder.orphan_of.map(|o| o.pid),
    })
}

/// One line per member of a tree, the root first: `  PID 5001 (`sh -c
/// vite`), child of 5000`.
pub fn tree_lines(tree: &[TreeMember]) -> Vec<String> {
    tree.iter()
        .enumerate()
        .map(|(i, m)| {
            let pid = m.identity.pid;
            if i == 0 {
                format!("  {}", named(pid, &m.command))
            } else {
                format!("  {}, child of {}", named(pid, &m.command), m.parent)
            }
        })
        .collect()
}

/// A tree for `--json`.
pub fn tree_json(tree: &[TreeMember]) -> Value {
    tree.iter()
        .map(|m| json!({"pid": m.identity.pid, "parent": m.parent, "command": m.command}))
        .collect()
}

/// One line per member a stop ended, past the root.
pub fn stop_lines(report: &StopReport, root: u32) -> Vec<String> {
    report
        .members
        .iter()
        .filter(|m| m.pid != root)
        .map(|m| {
            format!(
                "  and {} of its tree: {}",
                named(m.pid, &m.command),
                kill_name(m.outcome)
            )
        })
        .collect()
}

/// A stop's members for `--json`.
pub fn stop_json(report: &StopReport) -> Value {
    report
        .members
        .iter()
        .map(|m| json!({"pid": m.pid, "command": m.command, "outcome": kill_name(m.outcome)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(shown("node vite"), "node vite");
        assert_eq!(shown("\u{1b}]0;pwned\u{7}"), "\\e]0;pwned\\x{7}");
        assert_eq!(
            shown("a\nclear: no stale server"),
            "a\\nclear: no stale server"
        );
        assert_eq!(shown("\u{9b}2J"), "\\x{9b}2J", "the C1 CSI too");
        assert_eq!(shown("caf\u{e9} C:\\x"), "caf\u{e9} C:\\x");
        let once = shown("\u{1b}[2J\n");
        assert_eq!(shown(&once), once, "idempotent");
    }
}
