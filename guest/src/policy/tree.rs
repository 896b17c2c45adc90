//! A server is a tree: which processes belong to it, the order they are
//! stopped in, and which process above a port's holder is the server.
//!
//! The tree is read from one snapshot of the process table, taken before
//! the first signal. Two rules make it safe:
//! - a parent link counts only when the parent started no later than the
//!   child (a parent PID that was reused by a younger process is no
//!   parent: Windows never updates a parent PID);
//! - the caller and its ancestors are never members, whatever the links
//!   say.

use crate::host::Host;
use crate::policy::identity::command_line;
use crate::wit::bengal::pid_manager::process_table::{ProcessEntry, ProcessState};
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::TreeMember;

/// How deep pidman follows parent links (a loop in a corrupt table, or a
/// pathological chain, ends here).
pub const MAX_DEPTH: usize = 64;

/// A set of PIDs (the caller's chain, a walk's visited members): small,
/// and kept in a plain vector, which costs the plugin far less code than a
/// tree map.
pub type PidSet = Vec<Pid>;

/// One snapshot of the process table, indexed: entries sorted by PID, and
/// `(parent, child)` links sorted by parent.
pub struct Snapshot {
    entries: Vec<ProcessEntry>,
    children: Vec<(Pid, Pid)>,
}

impl Snapshot {
    /// Take a snapshot through the host.
    pub fn take(host: &impl Host) -> Result<Self, Error> {
        Ok(Self::from_entries(host.snapshot()?))
    }

    /// Index `entries`. A zombie is kept (its PID, and so its group's id,
    /// is still taken), but it is never a member nor a parent: it has
    /// exited, and its children are already someone else's.
    pub fn from_entries(mut entries: Vec<ProcessEntry>) -> Self {
        entries.retain(|e| e.pid != 0);
        entries.sort_unstable_by_key(|e| e.pid);
        entries.dedup_by_key(|e| e.pid);
        let mut snapshot = Self {
            entries,
            children: Vec::new(),
        };
        let mut children: Vec<(Pid, Pid)> = snapshot
            .entries
            .iter()
            .filter(|e| e.state == ProcessState::Running)
            .filter_map(|e| Some((snapshot.parent_of(e)?.pid, e.pid)))
            .collect();
        children.sort_unstable();
        snapshot.children = children;
        snapshot
    }

    /// Where `pid` is in `entries`.
    fn index(&self, pid: Pid) -> Option<usize> {
        self.entries.binary_search_by_key(&pid, |e| e.pid).ok()
    }

    /// The process `pid` (running or a zombie), whatever its start token.
    fn entry(&self, pid: Pid) -> Option<&ProcessEntry> {
        Some(&self.entries[self.index(pid)?])
    }

    /// The running process `pid`, if it has this start token.
    pub fn get(&self, identity: ProcessIdentity) -> Option<&ProcessEntry> {
        self.entry(identity.pid)
            .filter(|e| e.start_token == identity.start_token && e.state == ProcessState::Running)
    }

    /// `entry`'s parent, if that process runs and started no later.
    fn parent_of(&self, entry: &ProcessEntry) -> Option<&ProcessEntry> {
        if entry.parent == 0 || entry.parent == entry.pid {
            return None;
        }
        self.entry(entry.parent).filter(|parent| {
            parent.state == ProcessState::Running && parent.start_token <= entry.start_token
        })
    }

    /// The children of `pid`, in PID order.
    fn children_of(&self, pid: Pid) -> impl Iterator<Item = Pid> + '_ {
        let start = self.children.partition_point(|&(parent, _)| parent < pid);
        self.children[start..]
            .iter()
            .take_while(move |&&(parent, _)| parent == pid)
            .map(|&(_, child)| child)
    }

    /// The caller (`own`) and every ancestor of it the snapshot shows,
    /// plus the caller's parent as the host names it: never signalled.
    pub fn callers(&self, own: Pid, parent: Pid) -> PidSet {
        let mut callers = vec![own, parent];
        let mut at = self.entry(own).or_else(|| self.entry(parent));
        for _ in 0..MAX_DEPTH {
            let Some(entry) = at else { break };
            if !callers.contains(&entry.pid) {
                callers.push(entry.pid);
            }
            at = self.parent_of(entry);
        }
        callers
    }

    /// The tree of `root` (when it still runs with its start token) and,
    /// with `group`, of every member of that process group that started no
    /// earlier than the root: the roots first, then descendants, parents
    /// before children. Never PID 1, nor any of `excluded`.
    pub fn tree(
        &self,
        root: ProcessIdentity,
        group: Option<Pid>,
        excluded: &[Pid],
    ) -> Vec<ProcessEntry> {
        // Breadth first: `queue[next..]` is still to visit.
        let mut queue: Vec<Pid> = Vec::new();
        if self.get(root).is_some() {
            queue.push(root.pid);
        }
        if let Some(group) = group.filter(|&g| self.group_is_the_claims(g, root)) {
            queue.extend(
                self.entries
                    .iter()
                    .filter(|e| e.group == group && e.start_token >= root.start_token)
                    .map(|e| e.pid),
            );
        }
        // Visited, by position in `entries`: linear, however large the tree
        // (a runaway spawner is exactly what one wants to stop).
        let mut seen = vec![false; self.entries.len()];
        let mut members: Vec<ProcessEntry> = Vec::new();
        let mut next = 0;
        while let Some(&pid) = queue.get(next) {
            next += 1;
            let Some(at) = self.index(pid) else { continue };
            let entry = self.entries[at];
            if pid <= 1
                || seen[at]
                || entry.state != ProcessState::Running
                || excluded.contains(&pid)
            {
                continue;
            }
            seen[at] = true;
            members.push(entry);
            queue.extend(self.children_of(pid));
        }
        members
    }

    /// Whether process group `group` can still be the one a claim of
    /// `root` recorded: a PID is not reused while a group of that id
    /// exists, so a live process `group` with another start token means the
    /// claim's group ended and the id now names someone else's.
    fn group_is_the_claims(&self, group: Pid, root: ProcessIdentity) -> bool {
        group > 1
            && group == root.pid
            && self
                .entry(group)
                .is_none_or(|leader| leader.start_token == root.start_token)
    }
}

/// The members described for a report: each one's command line, read now
/// (a member that is gone by then is still listed, by its PID alone).
pub fn describe(host: &impl Host, members: &[ProcessEntry]) -> Vec<TreeMember> {
    members
        .iter()
        .map(|entry| TreeMember {
            identity: ProcessIdentity {
                pid: entry.pid,
                start_token: entry.start_token,
            },
            parent: entry.parent,
            command: host
                .inspect(entry.pid)
                .ok()
                .filter(|info| info.start_token == entry.start_token)
                .map_or_else(|| "?".into(), |info| command_line(&info)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: Pid, parent: Pid, group: Pid, start: u64) -> ProcessEntry {
        ProcessEntry {
            pid,
            parent,
            group,
            start_token: start,
            state: ProcessState::Running,
        }
    }

    fn pids(members: &[ProcessEntry]) -> Vec<Pid> {
        members.iter().map(|e| e.pid).collect()
    }

    fn id(pid: Pid, start_token: u64) -> ProcessIdentity {
        ProcessIdentity { pid, start_token }
    }

    #[test]
    fn a_tree_is_the_root_then_its_descendants_parents_first() {
        let snap = Snapshot::from_entries(vec![
            entry(1, 0, 1, 0),
            entry(10, 1, 10, 100),
            entry(11, 10, 10, 110),
            entry(12, 11, 10, 120),
            entry(13, 10, 10, 130),
            entry(20, 1, 20, 100),
        ]);
        let tree = snap.tree(id(10, 100), None, &[]);
        assert_eq!(pids(&tree), vec![10, 11, 13, 12]);
    }

    #[test]
    fn a_parent_younger_than_its_child_is_no_parent() {
        // PID 10 died; its PID went to a newer process, which the stale
        // parent link of 11 (as Windows keeps it) must not tie to it.
        let snap = Snapshot::from_entries(vec![entry(10, 1, 10, 500), entry(11, 10, 11, 110)]);
        assert_eq!(pids(&snap.tree(id(10, 500), None, &[])), vec![10]);
    }

    #[test]
    fn a_root_with_another_start_token_is_not_in_its_tree() {
        let snap = Snapshot::from_entries(vec![entry(10, 1, 10, 100), entry(11, 10, 10, 110)]);
        assert!(snap.tree(id(10, 99), None, &[]).is_empty());
    }

    #[test]
    fn the_group_of_a_gone_root_is_its_tree_from_its_start_on() {
        let snap = Snapshot::from_entries(vec![
            entry(11, 1, 10, 110),
            entry(12, 11, 12, 120),
            entry(13, 1, 10, 90),
            entry(14, 1, 14, 130),
        ]);
        let tree = snap.tree(id(10, 100), Some(10), &[]);
        assert_eq!(pids(&tree), vec![11, 12], "13 started before the claim");
        assert!(snap.tree(id(10, 100), None, &[]).is_empty());
    }

    #[test]
    fn a_group_whose_id_was_reused_is_not_the_claims() {
        let snap = Snapshot::from_entries(vec![entry(10, 1, 10, 900), entry(11, 10, 10, 910)]);
        assert!(snap.tree(id(10, 100), Some(10), &[]).is_empty());
        // Only the group the claim's own root led counts.
        let snap = Snapshot::from_entries(vec![entry(11, 1, 7, 910)]);
        assert!(snap.tree(id(10, 100), Some(7), &[]).is_empty());
    }

    #[test]
    fn the_caller_its_ancestors_and_init_are_never_members() {
        let snap = Snapshot::from_entries(vec![
            entry(1, 0, 1, 0),
            entry(10, 1, 10, 100),
            entry(11, 10, 10, 110),
            entry(12, 11, 10, 120),
            entry(13, 12, 10, 130),
            entry(14, 10, 10, 140),
        ]);
        let mut callers = snap.callers(13, 12);
        callers.sort_unstable();
        assert_eq!(callers, vec![1, 10, 11, 12, 13]);
        assert_eq!(
            pids(&snap.tree(id(10, 100), None, &callers)),
            Vec::<Pid>::new()
        );
        let tree = snap.tree(id(14, 140), None, &callers);
        assert_eq!(pids(&tree), vec![14]);
    }

    #[test]
    fn zombies_and_cycles_end_the_walk() {
        let mut zombie = entry(11, 10, 10, 110);
        zombie.state = ProcessState::Zombie;
        let snap =
            Snapshot::from_entries(vec![entry(10, 11, 10, 100), zombie, entry(12, 10, 10, 100)]);
        assert_eq!(pids(&snap.tree(id(10, 100), None, &[])), vec![10, 12]);
        // A loop of equal start tokens cannot make the walk endless.
        let snap = Snapshot::from_entries(vec![entry(20, 21, 20, 5), entry(21, 20, 20, 5)]);
        assert_eq!(pids(&snap.tree(id(20, 5), None, &[])), vec![20, 21]);
        assert!(snap.callers(20, 21).len() <= MAX_DEPTH + 1);
    }
}
