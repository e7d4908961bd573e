//! Which item of a chunk sent a message.
//!
//! The core names a task's message by its chunk's first item
//! (`BatchBuilder::on_message`), but a chunk holds many items. So a batch
//! whose messages someone wants runs its chunks with [`ITEM_MESSAGES`] set
//! in the call mode: `shoal._codec.run_items` then runs the items in a
//! Python loop that calls [`running_item`] with each item's offset in the
//! chunk, and `shoal.progress`/`shoal.log` ([`send`]) wrap their message
//! in an envelope that carries the offset (a `TaskMessage::Data` that
//! begins with [`MAGIC`]). The batch's `on_message` opens it ([`open`]):
//! the item's index is the chunk's first plus the offset.
//!
//! Envelopes cross the wire as plain data messages, so neither the core
//! nor the process backend knows about them. A batch nobody listens to
//! runs its items in the C loop of `run_items` and pays nothing.

use std::cell::Cell;

use pyo3::prelude::*;
use shoal_core::backend::TaskMessage;

/// A flag on a batch's call mode (`shoal._codec.CALL`, `STAR`, `APPLY`):
/// run the items one by one, naming the running one (see the module).
pub(crate) const ITEM_MESSAGES: u8 = 8;

/// The first bytes of an envelope. A message without them is not one.
const MAGIC: [u8; 8] = *b"\0shoal-i";

/// The bytes of an envelope before its payload: [`MAGIC`], the item's
/// offset (u64, little-endian) and the message's kind.
const HEADER: usize = MAGIC.len() + 8 + 1;

const PROGRESS: u8 = 0;
const LOG: u8 = 1;
const DATA: u8 = 2;

thread_local! {
    /// The offset in its chunk of the item this thread runs, while a chunk
    /// of a batch with messages runs here.
    static RUNNING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Says which item of the chunk this thread runs (its offset), or that
/// none does (`None`: the chunk ended). Called by
/// `shoal._codec.run_items` for chunks with [`ITEM_MESSAGES`].
#[pyfunction]
#[pyo3(signature = (offset, /))]
pub(crate) fn running_item(offset: Option<u64>) {
    RUNNING.set(offset);
}

/// Sends `message` to the running task's stream: in an envelope naming
/// the running item, if a chunk with [`ITEM_MESSAGES`] runs here.
pub(crate) fn send(message: TaskMessage) {
    match RUNNING.get() {
        Some(offset) => shoal_core::task::data(seal(offset, &message)),
        None => match message {
            TaskMessage::Progress(f) => shoal_core::task::progress(f),
            TaskMessage::Log(text) => shoal_core::task::log(text),
            TaskMessage::Data(d) => shoal_core::task::data(d),
        },
    }
}

/// `message` in an envelope naming the item at `offset`.
fn seal(offset: u64, message: &TaskMessage) -> Vec<u8> {
    let (kind, payload): (u8, &[u8]) = match message {
        TaskMessage::Progress(f) => (PROGRESS, &f.to_le_bytes()),
        TaskMessage::Log(text) => (LOG, text.as_bytes()),
        TaskMessage::Data(d) => (DATA, d),
    };
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&offset.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// The item offset and message inside an envelope; `None` if `bytes` is
/// not a well-formed one.
fn unseal(bytes: &[u8]) -> Option<(u64, TaskMessage)> {
    let rest = bytes.strip_prefix(&MAGIC)?;
    let (offset, rest) = rest.split_first_chunk::<8>()?;
    let (&kind, payload) = rest.split_first()?;
    let message = match kind {
        PROGRESS => TaskMessage::Progress(f32::from_le_bytes(*payload.first_chunk::<4>()?)),
        LOG => TaskMessage::Log(String::from_utf8(payload.to_vec()).ok()?),
        DATA => TaskMessage::Data(payload.to_vec()),
        _ => return None,
    };
    Some((u64::from_le_bytes(*offset), message))
}

/// The index of the item that sent `message`, in a chunk whose first item
/// is `start`, and the message itself: opened if it is an envelope, else
/// as it is (a message of the chunk as a whole, named by its first item).
pub(crate) fn open(start: usize, message: TaskMessage) -> (usize, TaskMessage) {
    let TaskMessage::Data(bytes) = &message else { return (start, message) };
    let Some((offset, inner)) = unseal(bytes) else { return (start, message) };
    match usize::try_from(offset).ok().and_then(|k| start.checked_add(k)) {
        Some(index) => (index, inner),
        None => (start, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_names_its_item() {
        for m in [
            TaskMessage::Progress(0.25),
            TaskMessage::Log("héllo".into()),
            TaskMessage::Data(vec![0, 1, 2]),
            TaskMessage::Log(String::new()),
        ] {
            assert_eq!(open(100, TaskMessage::Data(seal(7, &m))), (107, m));
        }
    }

    #[test]
    fn other_messages_belong_to_the_chunk() {
        for m in [
            TaskMessage::Progress(0.5),
            TaskMessage::Log("x".into()),
            TaskMessage::Data(b"user bytes".to_vec()),
            // Truncated or unknown envelopes are not envelopes.
            TaskMessage::Data(MAGIC.to_vec()),
            TaskMessage::Data(seal(1, &TaskMessage::Progress(0.5))[..HEADER + 2].to_vec()),
            TaskMessage::Data({
                let mut b = seal(1, &TaskMessage::Data(vec![]));
                b[HEADER - 1] = 9;
                b
            }),
        ] {
            assert_eq!(open(3, m.clone()), (3, m));
        }
    }

    #[test]
    fn an_offset_past_usize_is_not_an_index() {
        let m = TaskMessage::Data(seal(u64::MAX, &TaskMessage::Log("x".into())));
        assert_eq!(open(1, m.clone()), (1, m));
    }
}
