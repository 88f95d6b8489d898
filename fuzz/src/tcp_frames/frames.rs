//! The frame decoder fed like the connection's read loop feeds it: the stream arrives in chunks, every
//! complete frame is decoded and consumed, the rest waits for more bytes.
//!
//! Input: one byte choosing the frame limit, one choosing the chunk size, then the stream. Asserts that
//! chunking changes nothing (same messages, same error as decoding the whole stream at once), that the
//! unconsumed rest never exceeds one maximal frame (the read buffer is bounded), and that every decoded
//! message frames back to itself.

use dsync_core::Message;
use dsync_tokio::tcp::{decode_frames, encode_frame, FrameError};

/// Frame limits: tiny ones make `Oversized` reachable, the last is the production default.
const LIMITS: [usize; 4] = [8, 64, 1024, 4 << 20];

/// Runs the decoder over `data` split into chunks; see the module docs.
pub fn run(data: &[u8]) {
    let [limit, chunk, stream @ ..] = data else { return };
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];
    let chunk = usize::from(*chunk) + 1;

    let mut whole = Vec::new();
    let whole_result = decode_frames(stream, limit, &mut whole);

    let mut buf: Vec<u8> = Vec::new();
    let mut got: Vec<Message> = Vec::new();
    let mut error: Option<FrameError> = None;
    let mut consumed = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let before = got.len();
        match decode_frames(&buf, limit, &mut got) {
            Ok(used) => {
                assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
                assert!(used > 0 || got.len() == before, "messages decoded from zero bytes");
                buf.drain(..used);
                consumed += used;
                // What waits is less than one frame header plus one maximal frame.
                assert!(buf.len() < 4 + limit, "{} bytes buffered with a {limit}-byte frame limit", buf.len());
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }

    assert_eq!(got, whole, "chunks of {chunk} bytes decode other messages than the whole stream");
    match (whole_result, error) {
        (Ok(used), None) => assert_eq!(used, consumed, "chunked decoding consumed a different amount"),
        (Err(a), Some(b)) => assert_eq!(a, b, "chunked decoding failed differently"),
        (a, b) => panic!("whole stream: {a:?}, in chunks: {b:?}"),
    }

    for msg in &got {
        let mut framed = Vec::new();
        encode_frame(msg, &mut framed);
        let mut back = Vec::new();
        assert_eq!(decode_frames(&framed, usize::MAX, &mut back), Ok(framed.len()));
        assert_eq!(back.as_slice(), std::slice::from_ref(msg), "{msg:?} does not frame back to itself");
    }
}
