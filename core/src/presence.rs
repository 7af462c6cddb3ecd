//! Who is reading now, across the cluster: this node's reader sockets (several tabs are one
//! reader) and the readers other nodes announce on the bus, dropped when a node falls silent.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::time::Millis;

/// A JSON value with the time it was set; `currentBook` and `currentPage` update independently.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped {
    /// The value as JSON text, keeping the type it was sent with. Carried between nodes as a
    /// string, and checked to be JSON when it arrives, so that the list can show it as it is.
    #[serde(with = "json_text")]
    pub json: Box<RawValue>,
    pub at: Millis,
}

impl PartialEq for Stamped {
    fn eq(&self, other: &Stamped) -> bool {
        self.json.get() == other.json.get() && self.at == other.at
    }
}

impl Eq for Stamped {}

/// JSON text as a string on the wire (what nodes have always sent), refused unless it is JSON.
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(json: &RawValue, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(json.get())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
        RawValue::from_string(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One online reader as listed: its id and its presence, borrowed from the node it is on, or
/// merged from the nodes it is on.
pub type Listed<'a> = (&'a str, Cow<'a, ReaderPresence>);

/// One reader's presence on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderPresence {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub last_activity: Millis,
    pub current_book: Option<Stamped>,
    pub current_page: Option<Stamped>,
    pub connections: u32,
}

impl ReaderPresence {
    fn merge(&mut self, other: &ReaderPresence) {
        self.connections += other.connections;
        self.last_activity = self.last_activity.max(other.last_activity);
        if self.first_name.is_none() {
            self.first_name.clone_from(&other.first_name);
        }
        if self.last_name.is_none() {
            self.last_name.clone_from(&other.last_name);
        }
        latest(&mut self.current_book, &other.current_book);
        latest(&mut self.current_page, &other.current_page);
    }

    /// Records reading activity at `at`, with the position the event carried, if any.
    pub fn touch(&mut self, at: Millis, book: Option<&RawValue>, page: Option<&RawValue>) {
        self.last_activity = self.last_activity.max(at);
        let stamp = |v: &RawValue| Some(Stamped { json: v.to_owned(), at });
        if let Some(book) = book {
            latest(&mut self.current_book, &stamp(book));
        }
        if let Some(page) = page {
            latest(&mut self.current_page, &stamp(page));
        }
    }
}

fn latest(mine: &mut Option<Stamped>, theirs: &Option<Stamped>) {
    if let Some(t) = theirs {
        if mine.as_ref().is_none_or(|m| t.at >= m.at) {
            *mine = Some(t.clone());
        }
    }
}

#[derive(Debug, Default)]
struct RemoteNode {
    last_heard: Millis,
    readers: BTreeMap<String, ReaderPresence>,
}

/// The cluster's readers as this node knows them.
#[derive(Debug, Default)]
pub struct Presence {
    local: BTreeMap<String, ReaderPresence>,
    remote: BTreeMap<String, RemoteNode>,
    changed: bool,
}

impl Presence {
    /// A reader socket connected here at `now`; returns the reader's state on this node.
    pub fn connect(
        &mut self,
        user: &str,
        first: &Option<String>,
        last: &Option<String>,
        now: Millis,
    ) -> &ReaderPresence {
        self.changed = true;
        let r = self.local.entry(user.to_owned()).or_insert_with(|| ReaderPresence {
            first_name: None,
            last_name: None,
            last_activity: now,
            current_book: None,
            current_page: None,
            connections: 0,
        });
        r.connections += 1;
        r.last_activity = r.last_activity.max(now);
        r.first_name.clone_from(first);
        r.last_name.clone_from(last);
        r
    }

    /// A reader socket here closed; returns the reader's remaining state on this node, if any.
    pub fn disconnect(&mut self, user: &str) -> Option<&ReaderPresence> {
        self.changed = true;
        let r = self.local.get_mut(user)?;
        r.connections = r.connections.saturating_sub(1);
        if r.connections == 0 {
            self.local.remove(user);
            return None;
        }
        self.local.get(user)
    }

    /// A local reader's accepted event.
    pub fn local_activity(
        &mut self,
        user: &str,
        at: Millis,
        book: Option<&RawValue>,
        page: Option<&RawValue>,
    ) {
        if let Some(r) = self.local.get_mut(user) {
            r.touch(at, book, page);
            self.changed = true;
        }
    }

    /// This node's readers, as announced in heartbeats.
    pub fn local_readers(&self) -> impl Iterator<Item = (&String, &ReaderPresence)> {
        self.local.iter()
    }

    pub fn local_reader(&self, user: &str) -> Option<&ReaderPresence> {
        self.local.get(user)
    }

    /// Another node was heard from at `now`.
    pub fn heard(&mut self, node: &str, now: Millis) {
        self.remote.entry(node.to_owned()).or_default().last_heard = now;
    }

    /// Another node's reader changed; `None` means the reader left that node.
    pub fn remote_update(&mut self, node: &str, user: &str, reader: Option<ReaderPresence>) {
        let readers = &mut self.remote.entry(node.to_owned()).or_default().readers;
        match reader {
            Some(r) => readers.insert(user.to_owned(), r),
            None => readers.remove(user),
        };
        self.changed = true;
    }

    /// Another node's reader sent an event that node accepted.
    pub fn remote_activity(
        &mut self,
        node: &str,
        user: &str,
        at: Millis,
        book: Option<&RawValue>,
        page: Option<&RawValue>,
    ) {
        if let Some(r) = self.remote.get_mut(node).and_then(|n| n.readers.get_mut(user)) {
            r.touch(at, book, page);
            self.changed = true;
        }
    }

    /// Another node's full list of readers, replacing what was known of it.
    pub fn remote_snapshot(&mut self, node: &str, readers: BTreeMap<String, ReaderPresence>) {
        let known = &mut self.remote.entry(node.to_owned()).or_default().readers;
        if *known != readers {
            *known = readers;
            self.changed = true;
        }
    }

    /// Forgets another node and its readers (it left, or fell silent).
    pub fn forget(&mut self, node: &str) {
        if let Some(n) = self.remote.remove(node) {
            self.changed |= !n.readers.is_empty();
        }
    }

    /// Nodes not heard from since `deadline`.
    pub fn silent_since(&self, deadline: Millis) -> Vec<String> {
        self.remote.iter().filter(|(_, n)| n.last_heard <= deadline).map(|(k, _)| k.clone()).collect()
    }

    /// The other nodes heard from and not yet expired, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.remote.keys().map(String::as_str)
    }

    /// When the least recently heard node was last heard.
    pub fn oldest_heard(&self) -> Option<Millis> {
        self.remote.values().map(|n| n.last_heard).min()
    }

    /// Whether the list changed since the last [`Presence::take_changed`].
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Something that decides who sees the list changed: push it again.
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Every online reader, merged across nodes, most recently active first. A reader on one node
    /// is borrowed; only one on several is merged into a copy (the list is pushed every second,
    /// and may hold thousands).
    pub fn online(&self) -> Vec<Listed<'_>> {
        // Each node's readers are sorted by id: one pass over all of them at once lists each id
        // once, merged in the order of the nodes.
        let nodes = std::iter::once(&self.local).chain(self.remote.values().map(|n| &n.readers));
        let mut heads: Vec<_> = nodes.map(|readers| readers.iter().peekable()).collect();
        let mut list: Vec<Listed<'_>> = Vec::with_capacity(self.local.len());
        while let Some(user) = heads.iter_mut().filter_map(|h| h.peek().map(|&(u, _)| u.as_str())).min() {
            let mut listed: Option<Cow<'_, ReaderPresence>> = None;
            for head in &mut heads {
                if let Some((_, r)) = head.next_if(|&(u, _)| u == user) {
                    match &mut listed {
                        Some(merged) => merged.to_mut().merge(r),
                        None => listed = Some(Cow::Borrowed(r)),
                    }
                }
            }
            list.extend(listed.map(|r| (user, r)));
        }
        list.sort_by(|a, b| b.1.last_activity.cmp(&a.1.last_activity).then_with(|| a.0.cmp(b.0)));
        list
    }

    /// The distinct online readers in the cluster, sorted.
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.local.keys().map(String::as_str).collect();
        users.extend(self.remote.values().flat_map(|n| n.readers.keys().map(String::as_str)));
        users.sort_unstable();
        users.dedup();
        users
    }

    /// The number of distinct online readers in the cluster.
    pub fn count(&self) -> usize {
        self.users().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_travels_as_the_string_it_always_was_and_only_json_is_taken() {
        #[derive(Serialize)]
        struct AsString<'a> {
            json: &'a str,
            at: Millis,
        }
        let stamped = Stamped { json: RawValue::from_string(r#"{"n":1}"#.into()).unwrap(), at: Millis(5) };
        let wire = postcard::to_stdvec(&stamped).unwrap();
        assert_eq!(wire, postcard::to_stdvec(&AsString { json: r#"{"n":1}"#, at: Millis(5) }).unwrap());
        assert_eq!(postcard::from_bytes::<Stamped>(&wire).unwrap(), stamped);
        let not_json = postcard::to_stdvec(&AsString { json: "moby", at: Millis(5) }).unwrap();
        assert!(postcard::from_bytes::<Stamped>(&not_json).is_err(), "no node writes it; none takes it");
    }

    #[test]
    fn a_reader_on_several_nodes_is_listed_once_merged_and_the_rest_as_they_are() {
        let mut p = Presence::default();
        p.connect("r2", &Some("Bo".into()), &None, Millis(10));
        p.connect("r1", &None, &None, Millis(20));
        let there = |at: u64, first: Option<&str>| ReaderPresence {
            first_name: first.map(Into::into),
            last_name: None,
            last_activity: Millis(at),
            current_book: None,
            current_page: None,
            connections: 1,
        };
        p.remote_snapshot(
            "node-b",
            BTreeMap::from([("r2".into(), there(30, Some("Other"))), ("r3".into(), there(5, None))]),
        );
        p.remote_snapshot("node-c", BTreeMap::from([("r0".into(), there(20, None))]));
        let online = p.online();
        let got: Vec<_> = online
            .iter()
            .map(|(u, r)| (*u, r.last_activity.0, r.connections, r.first_name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [("r2", 30, 2, Some("Bo")), ("r0", 20, 1, None), ("r1", 20, 1, None), ("r3", 5, 1, None)],
            "most recently active first, then by id; this node's name first"
        );
        assert!(
            matches!(online[0].1, Cow::Owned(_)) && matches!(online[1].1, Cow::Borrowed(_)),
            "only the merged one is copied"
        );
    }
}
