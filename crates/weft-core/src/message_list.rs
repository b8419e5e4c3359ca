//! [`MessageList`]: the messages of a provider request, shared with the
//! context's history, with their running token estimate.
//!
//! The list is one reference-counted vector of shared messages: cloning it
//! (handing the history to a request) costs one reference count whatever
//! its length, and appending to a list nobody else holds costs no copy
//! (copy-on-write: a list still shared is copied first, so a request never
//! sees messages added after it was built). The token estimate
//! ([`Message::estimated_tokens`] summed) is kept as messages are added, so
//! reading it never walks the list.

use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::message::Message;

/// A shared list of messages and the sum of their token estimates (see
/// the module docs). Reads go through the slice it derefs to.
#[derive(Clone, Default)]
pub struct MessageList {
    items: Arc<Vec<Arc<Message>>>,
    tokens: usize,
}

impl MessageList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `message` (copying the pointers first only when another
    /// holder shares the list).
    pub fn push(&mut self, message: Arc<Message>) {
        self.tokens += message.estimated_tokens();
        Arc::make_mut(&mut self.items).push(message);
    }

    /// Inserts `message` at `index` (shifting the later ones).
    ///
    /// # Panics
    /// If `index > len`, as [`Vec::insert`].
    pub fn insert(&mut self, index: usize, message: Arc<Message>) {
        self.tokens += message.estimated_tokens();
        Arc::make_mut(&mut self.items).insert(index, message);
    }

    /// The sum of the messages' [`Message::estimated_tokens`], without
    /// walking them.
    pub fn estimated_tokens(&self) -> usize {
        self.tokens
    }

    /// Whether `other` is this very list (the same shared vector), not only
    /// an equal one.
    pub fn shares_with(&self, other: &MessageList) -> bool {
        Arc::ptr_eq(&self.items, &other.items)
    }
}

impl Deref for MessageList {
    type Target = [Arc<Message>];

    fn deref(&self) -> &[Arc<Message>] {
        &self.items
    }
}

impl Extend<Arc<Message>> for MessageList {
    fn extend<I: IntoIterator<Item = Arc<Message>>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        if iter.peek().is_none() {
            return;
        }
        let items = Arc::make_mut(&mut self.items);
        for message in iter {
            self.tokens += message.estimated_tokens();
            items.push(message);
        }
    }
}

impl FromIterator<Arc<Message>> for MessageList {
    fn from_iter<I: IntoIterator<Item = Arc<Message>>>(iter: I) -> Self {
        let items: Vec<Arc<Message>> = iter.into_iter().collect();
        Self::from(items)
    }
}

impl From<Vec<Arc<Message>>> for MessageList {
    fn from(items: Vec<Arc<Message>>) -> Self {
        let tokens = items.iter().map(|m| m.estimated_tokens()).sum();
        Self {
            items: Arc::new(items),
            tokens,
        }
    }
}

impl From<Vec<Message>> for MessageList {
    fn from(items: Vec<Message>) -> Self {
        items.into_iter().map(Arc::new).collect()
    }
}

impl<'a> IntoIterator for &'a MessageList {
    type Item = &'a Arc<Message>;
    type IntoIter = std::slice::Iter<'a, Arc<Message>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl IntoIterator for MessageList {
    type Item = Arc<Message>;
    type IntoIter = std::vec::IntoIter<Arc<Message>>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.items).into_iter()
    }
}

impl PartialEq for MessageList {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl PartialEq<Vec<Arc<Message>>> for MessageList {
    fn eq(&self, other: &Vec<Arc<Message>>) -> bool {
        *self.items == *other
    }
}

impl std::fmt::Debug for MessageList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.items.iter()).finish()
    }
}

impl Serialize for MessageList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MessageList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Arc<Message>>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BranchId;
    use crate::message::Role;

    fn text(s: &str) -> Arc<Message> {
        Arc::new(Message::text(BranchId::main(), Role::User, s))
    }

    fn sum(list: &MessageList) -> usize {
        list.iter().map(|m| m.estimated_tokens()).sum()
    }

    #[test]
    fn keeps_the_token_sum_as_it_grows() {
        let mut list = MessageList::new();
        list.push(text("hello there"));
        list.extend([text(&"x".repeat(400)), text("y")]);
        list.insert(0, text("first"));
        assert_eq!(list.len(), 4);
        assert_eq!(list.estimated_tokens(), sum(&list));
        assert!(list.estimated_tokens() > 100);
        let back: MessageList =
            serde_json::from_value(serde_json::to_value(&list).unwrap()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.estimated_tokens(), list.estimated_tokens());
    }

    #[test]
    fn a_clone_is_shared_and_never_sees_later_messages() {
        let mut history = MessageList::from(vec![text("a"), text("b")]);
        let request = history.clone();
        assert!(request.shares_with(&history));
        history.push(text("c"));
        assert!(!request.shares_with(&history));
        assert_eq!(request.len(), 2);
        assert_eq!(history.len(), 3);
        assert_eq!(request.estimated_tokens(), sum(&request));
        assert_eq!(history.estimated_tokens(), sum(&history));
        // The messages themselves are shared, not copied.
        assert!(Arc::ptr_eq(&request[0], &history[0]));
        // Nobody else holds it: appending keeps the same vector.
        drop(request);
        let before = Arc::as_ptr(&history.items);
        history.push(text("d"));
        assert_eq!(history.len(), 4);
        assert_eq!(Arc::as_ptr(&history.items), before, "appended in place");
    }
}
