//! Server-sent events: the `data` of each event, from bytes as they arrive.
//!
//! Only what chat-completion streams use is kept: `data:` lines (several in
//! one event are joined with `\n`); comments and other fields are skipped.
//! Lines end with `\n` or `\r\n` and may be split anywhere across chunks.

/// An incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds the next bytes of the stream; returns the data of each event
    /// that they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(piece);
            if self.line.last() != Some(&b'\n') {
                break; // the rest of this line comes in a later chunk
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_blank_lines_and_join_their_data_lines() {
        let mut parser = SseParser::default();
        let events =
            parser.feed(b": comment\ndata: one\n\nevent: x\ndata:two\r\ndata: lines\r\n\r\n");
        assert_eq!(events, ["one", "two\nlines"]);
    }

    #[test]
    fn a_stream_split_at_every_byte_gives_the_same_events() {
        let stream = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let mut parser = SseParser::default();
        let events: Vec<String> = stream.iter().flat_map(|b| parser.feed(&[*b])).collect();
        assert_eq!(events, ["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn an_unfinished_event_is_not_delivered() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: half").is_empty());
        assert!(parser.feed(b"\n").is_empty());
        assert_eq!(parser.feed(b"\n"), ["half"]);
    }
}
