//! Log reading: decompression, text decoding, sniffing and record
//! splitting (JSON lines, JSON arrays and envelopes, CSV), then each
//! record's normalisation into an event. The first byte picks how the rest
//! is wrapped, so the fuzzer explores gzip and UTF-16 content rather than
//! having to produce valid deflate streams itself.
#![no_main]

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tokenward_event::{Event, Locator, Words};
use tokenward_logread::{open, read_batches, sniff, Batch, BufferPool, CsvRow, Format, Item};

fn scratch() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        std::path::PathBuf::from(format!("{dir}/tokenward-fuzz-{}", std::process::id()))
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn event(bytes: &[u8], line: u64) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let ev = Event::from_record(v, None, Arc::from("fuzz"), Locator { line, record: line });
        // The words read off the text are the built record's, as a set
        // (the record holds renamed Log Analytics columns twice).
        let words = std::str::from_utf8(bytes).ok().and_then(Words::of_json);
        if let Some(words) = words {
            let set = |w: &Words| {
                let mut v: Vec<String> = w.iter().map(str::to_owned).collect();
                v.sort();
                v.dedup();
                v
            };
            assert_eq!(set(&words), set(&Words::of_value(&ev.record)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode % 6 {
        0 | 1 => rest.to_vec(),
        2 => gzip(rest),
        3 => {
            // A gzip member cut short: the records before the cut are kept.
            let z = gzip(rest);
            let cut = z.len() * usize::from(mode / 6).min(40) / 41;
            z[..cut.max(2).min(z.len())].to_vec()
        }
        4 => {
            let mut v = vec![0xFF, 0xFE];
            for u in String::from_utf8_lossy(rest).encode_utf16() {
                v.extend_from_slice(&u.to_le_bytes());
            }
            v
        }
        _ => {
            let mut v = vec![0xEF, 0xBB, 0xBF];
            v.extend_from_slice(rest);
            v
        }
    };
    let forced = match mode % 6 {
        1 => Format::ALL
            .get(usize::from(mode / 6) % Format::ALL.len())
            .copied(),
        _ => None,
    };
    let path = scratch();
    std::fs::write(path, &bytes).unwrap();
    let Ok(mut opened) = open(path, Arc::new(AtomicU64::new(0))) else {
        return;
    };
    let Ok((head, sniffed)) = sniff(&mut opened.reader, forced) else {
        return;
    };
    let Ok(sniffed) = sniffed else {
        return;
    };
    let mut batches = Vec::new();
    let pool = BufferPool::default();
    let _ = read_batches(
        sniffed.container,
        sniffed.delimiter,
        opened.reader,
        head,
        &mut |b| batches.push(b),
        &pool,
    );
    for batch in batches {
        match batch {
            Batch::Lines { data, first_line } => {
                for (i, line) in data.split(|&b| b == b'\n').enumerate() {
                    event(line, first_line + i as u64);
                }
            }
            Batch::Pieces { data, items } => {
                for item in items {
                    if let Item::Rec {
                        start, end, line, ..
                    } = item
                    {
                        event(&data[start..end], line);
                    }
                }
            }
            Batch::Rows { rows, .. } => {
                // Purview's AuditData column and Log Analytics' dynamic
                // columns hold JSON.
                for row in rows {
                    if let CsvRow::Row(fields, line) = row {
                        for f in fields.iter().filter(|f| f.starts_with('{')) {
                            event(f.as_bytes(), line);
                        }
                    }
                }
            }
        }
    }
});
