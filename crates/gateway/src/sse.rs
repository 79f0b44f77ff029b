//! Server-sent events, split as they arrive: LF, CRLF and CR line endings, events end at a blank
//! line. Each complete event is handed on with its raw bytes, so what the client receives is
//! byte-for-byte what the provider sent (minus any event the gateway removes).

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into raw events (each including its terminating blank line).
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already scanned without finding an event end.
    scanned: usize,
}

/// An "event" that grows past this without a blank line is handed on as it is (a provider that
/// does not speak SSE properly must not make Loupe buffer without bound).
pub const MAX_EVENT_BYTES: usize = 4 << 20;

impl EventSplitter {
    /// Adds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.event_end() {
            out.push(self.buf.split_to(end).freeze());
            self.scanned = 0;
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            self.scanned = 0;
            out.push(self.buf.split().freeze());
        }
        out
    }

    /// Whether part of an event is waiting for its end.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Whatever is left when the stream ends (an event without a final blank line).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// The end of the first event: two line breaks in a row (`\n\n`, `\r\n\r\n`, `\r\r`, mixed).
    fn event_end(&mut self) -> Option<usize> {
        let b = &self.buf[..];
        // Start a little before where the last scan stopped: a break may straddle chunks.
        let mut i = self.scanned.saturating_sub(4);
        while i < b.len() {
            if let Some(l1) = line_break(b, i) {
                // A CR that is the last byte so far may be the start of a CRLF: in a CRLF (or LF)
                // stream wait for the next byte; in a CR-only stream (first break a lone CR) it
                // completes the event.
                let second = i + l1;
                let cr_at_end = second + 1 == b.len() && b[second] == b'\r';
                let cr_stream = l1 == 1 && b[i] == b'\r';
                if cr_at_end && !cr_stream {
                    break;
                }
                if let Some(l2) = line_break(b, second) {
                    return Some(second + l2);
                }
                // A lone CR at the very end might still become CRLF.
                if i + l1 >= b.len() {
                    break;
                }
            }
            i += 1;
        }
        self.scanned = b.len();
        None
    }
}

/// Length of the line break at `i` (1 or 2), if one starts there. A CR at the end of the buffer
/// counts as a break of 1 only when more data cannot turn it into CRLF — callers handle that by
/// rescanning; here a trailing CR is reported as a break so `\r\r` ends an event.
fn line_break(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i) {
        Some(b'\n') => Some(1),
        Some(b'\r') => match b.get(i + 1) {
            Some(b'\n') => Some(2),
            _ => Some(1),
        },
        _ => None,
    }
}

/// The `data:` payload of a raw event (lines joined with `\n`), if it has any.
pub fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("data:") {
            let v = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = EventSplitter::default();
        let mut out: Vec<String> = Vec::new();
        for c in chunks {
            out.extend(
                s.push(c)
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            );
        }
        out.extend(s.finish().map(|b| String::from_utf8_lossy(&b).into_owned()));
        out
    }

    #[test]
    fn every_line_ending_and_any_chunking() {
        for sep in ["\n", "\r\n", "\r"] {
            let text = format!("data: a{sep}{sep}data: b{sep}data: c{sep}{sep}: ping{sep}{sep}");
            let want = vec![
                format!("data: a{sep}{sep}"),
                format!("data: b{sep}data: c{sep}{sep}"),
                format!(": ping{sep}{sep}"),
            ];
            // Whole, then byte by byte, then in threes.
            assert_eq!(split_all(&[text.as_bytes()]), want, "{sep:?}");
            let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
            assert_eq!(split_all(&bytes), want, "{sep:?} bytewise");
            let threes: Vec<&[u8]> = text.as_bytes().chunks(3).collect();
            assert_eq!(split_all(&threes), want, "{sep:?} threes");
        }
    }

    #[test]
    fn mixed_endings_and_breaks_split_across_chunks() {
        // CRLF whose CR and LF arrive in different chunks is one break, not two.
        assert_eq!(
            split_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]),
            vec!["data: a\r\n\r\n".to_string(), "data: b\r\n\r\n".to_string()]
        );
        // A CR stream whose second CR comes later.
        assert_eq!(
            split_all(&[b"data: a\r", b"\rdata: b\r\r"]),
            vec!["data: a\r\r".to_string(), "data: b\r\r".to_string()]
        );
        // A final event without its blank line is handed over at the end.
        assert_eq!(
            split_all(&[b"data: a\n\ndata: [DONE]"]),
            vec!["data: a\n\n".to_string(), "data: [DONE]".to_string()]
        );
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: x").is_empty() && s.pending());
        assert_eq!(s.push(b"\n\n").len(), 1);
        assert!(!s.pending());
    }

    #[test]
    fn an_endless_event_is_not_buffered_without_bound() {
        let mut s = EventSplitter::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        let out = s.push(&big);
        assert_eq!(out.len(), 1);
        assert!(!s.pending());
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(
            data_of(b"event: x\ndata: {\"a\":\ndata: 1}\n\n").as_deref(),
            Some("{\"a\":\n1}")
        );
        assert_eq!(data_of(b"data:[DONE]\r\n\r\n").as_deref(), Some("[DONE]"));
        assert_eq!(data_of(b": comment\n\n"), None);
    }
}
