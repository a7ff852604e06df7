//! Re-splits the snapshot's data segments at runs of zeros.
//!
//! wizer emits at most 10,000 data segments, so past that it merges the closest
//! islands of non-zero memory together with the zeros between them. A prepared
//! tract plan has far more islands than that (a depthwise kernel packed for an
//! 8-row matmul kernel keeps one f32 in every 32 bytes), and the zeros then ship
//! in the component. Engines accept many more segments (wasmparser, which wasmtime
//! validates with, allows 100,000), so this splits each segment again wherever a
//! zero run is longer than a segment header costs, longest runs first, up to
//! [`MAX_SEGMENTS`]. Memory contents after instantiation are unchanged.

use wasmops_sign::{put_leb, sections, write_section};

/// Well inside wasmparser's limit of 100,000 data segments per module.
const MAX_SEGMENTS: usize = 60_000;
/// A new active segment costs its flags byte, `i32.const`, the offset (4 bytes
/// for a heap of up to 256 MiB), `end` and a length (1–2 bytes for these short
/// islands): only longer zero runs are worth a split.
const MIN_ZERO_RUN: usize = 10;

const MODULE_SECTION: u8 = 1;
const DATA_SECTION: u8 = 11;
const DATA_COUNT_SECTION: u8 = 12;

/// Rewrites every core module of `component` (or `component` itself, if it is a
/// core module) with split data segments.
pub fn resplit(wasm: &[u8]) -> Result<Vec<u8>, String> {
    // `sections` refuses anything without a module or component header.
    let all = sections(wasm).map_err(|e| e.to_string())?;
    let is_component = wasm[4..8] != [1, 0, 0, 0];
    // The data count section comes before the data section, so split first.
    let split = match all.iter().find(|s| !is_component && s.id == DATA_SECTION) {
        Some(data) => Some(split_section(data.contents)?),
        None => None,
    };
    let mut out = wasm[..8].to_vec();
    for section in all {
        match (&split, section.id) {
            (_, MODULE_SECTION) if is_component => {
                write_section(&mut out, MODULE_SECTION, &resplit(section.contents)?)
            }
            (Some((_, contents)), DATA_SECTION) => write_section(&mut out, DATA_SECTION, contents),
            (Some((count, _)), DATA_COUNT_SECTION) => {
                let mut contents = vec![];
                put_leb(&mut contents, u64::from(*count));
                write_section(&mut out, DATA_COUNT_SECTION, &contents);
            }
            _ => out.extend_from_slice(section.raw),
        }
    }
    Ok(out)
}

/// One data segment as read: an active segment of memory 0 at a constant
/// offset (what wizer writes) can be split; anything else is copied as it is.
enum Segment<'a> {
    Active { offset: u32, data: &'a [u8] },
    Other(&'a [u8]),
}

fn split_section(contents: &[u8]) -> Result<(u32, Vec<u8>), String> {
    let segments = parse(contents)?;
    // Every zero run worth a split, as (segment, start, length).
    let mut runs = vec![];
    for (ix, seg) in segments.iter().enumerate() {
        if let Segment::Active { data, .. } = seg {
            let mut at = 0;
            while at < data.len() {
                if data[at] != 0 {
                    at += 1;
                    continue;
                }
                let len = data[at..].iter().take_while(|b| **b == 0).count();
                if len >= MIN_ZERO_RUN && at > 0 && at + len < data.len() {
                    runs.push((ix, at, len));
                }
                at += len;
            }
        }
    }
    let budget = MAX_SEGMENTS.saturating_sub(segments.len());
    if runs.len() > budget {
        runs.sort_by_key(|r| std::cmp::Reverse(r.2));
        runs.truncate(budget);
    }
    runs.sort();

    let mut body = vec![];
    let mut count = 0u32;
    let mut runs = runs.into_iter().peekable();
    for (ix, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Other(raw) => {
                body.extend_from_slice(raw);
                count += 1;
            }
            Segment::Active { offset, data } => {
                let mut start = 0;
                while let Some((_, at, len)) = runs.next_if(|r| r.0 == ix) {
                    put_active(&mut body, offset + start as u32, &data[start..at]);
                    count += 1;
                    start = at + len;
                }
                put_active(&mut body, offset + start as u32, &data[start..]);
                count += 1;
            }
        }
    }
    let mut out = vec![];
    put_leb(&mut out, count as u64);
    out.extend_from_slice(&body);
    Ok((count, out))
}

fn parse(contents: &[u8]) -> Result<Vec<Segment<'_>>, String> {
    use wasmparser::{BinaryReader, DataKind, DataSectionReader, Operator};
    let reader =
        DataSectionReader::new(BinaryReader::new(contents, 0)).map_err(|e| e.to_string())?;
    let mut out = vec![];
    for data in reader {
        let data = data.map_err(|e| e.to_string())?;
        let offset = match &data.kind {
            DataKind::Active {
                memory_index: 0,
                offset_expr,
            } => {
                let mut ops = offset_expr.get_operators_reader();
                match (ops.read(), ops.read()) {
                    (Ok(Operator::I32Const { value }), Ok(Operator::End)) => Some(value as u32),
                    _ => None,
                }
            }
            _ => None,
        };
        out.push(match offset {
            Some(offset) => Segment::Active {
                offset,
                data: data.data,
            },
            None => Segment::Other(&contents[data.range.clone()]),
        });
    }
    Ok(out)
}

fn put_active(out: &mut Vec<u8>, offset: u32, data: &[u8]) {
    out.push(0);
    out.push(0x41);
    put_sleb(out, offset as i32 as i64);
    out.push(0x0b);
    put_leb(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn put_sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with one memory and the given active segments, as wat.
    fn module(segments: &[(u32, &[u8])]) -> Vec<u8> {
        let mut wat = String::from("(module (memory 1)");
        for (offset, data) in segments {
            let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
            wat += &format!(" (data (i32.const {offset}) \"{escaped}\")");
        }
        wat += ")";
        wat::parse_str(&wat).unwrap()
    }

    /// The memory image a module's active segments leave, read back with wasmparser.
    fn image(wasm: &[u8]) -> (usize, Vec<u8>) {
        let mut mem = vec![0u8; 65536];
        let mut n = 0;
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            if let wasmparser::Payload::DataSection(reader) = payload.unwrap() {
                for seg in reader {
                    let seg = seg.unwrap();
                    let wasmparser::DataKind::Active { offset_expr, .. } = seg.kind else {
                        panic!()
                    };
                    let mut ops = offset_expr.get_operators_reader();
                    let wasmparser::Operator::I32Const { value } = ops.read().unwrap() else {
                        panic!()
                    };
                    mem[value as usize..value as usize + seg.data.len()].copy_from_slice(seg.data);
                    n += 1;
                }
            }
        }
        (n, mem)
    }

    #[test]
    fn splits_at_long_zero_runs_and_keeps_the_memory_image() {
        let mut a = vec![7u8; 5];
        a.extend([0; 40]);
        a.extend([9u8; 3]);
        a.extend([0; 4]); // too short to split
        a.extend([1u8; 2]);
        let original = module(&[(100, &a), (1000, &[0, 0, 5, 0, 0])]);
        let split = resplit(&original).unwrap();
        wasmparser::Validator::new().validate_all(&split).unwrap();
        let (n_before, before) = image(&original);
        let (n_after, after) = image(&split);
        assert_eq!(before, after);
        assert_eq!((n_before, n_after), (2, 3));
        assert!(
            split.len() < original.len(),
            "{} vs {}",
            split.len(),
            original.len()
        );
    }

    #[test]
    fn a_module_without_data_is_unchanged() {
        let original = wat::parse_str("(module (memory 1) (func))").unwrap();
        assert_eq!(resplit(&original).unwrap(), original);
    }
}
