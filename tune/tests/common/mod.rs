//! What several test files share: interval lines encoded by hand, any histogram a hostile
//! or foreign tool could write.

use std::io::Write as _;

use base64::Engine as _;

/// A V2 histogram's counts as a list of steps: a run of empty slots, or one slot's count.
#[derive(Debug, Clone)]
pub enum Step {
    /// A run of this many empty slots.
    Empty(u64),
    /// One slot with this count.
    Count(u64),
}

fn zig_zag_varint(value: i64, out: &mut Vec<u8>) {
    let mut value = ((value << 1) ^ (value >> 63)) as u64;
    for _ in 0..8 {
        if value < 0x80 {
            out.push(value as u8);
            return;
        }
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `steps` encoded as a V2 histogram (deflated when `compress`), in an interval line.
pub fn v2_line(digits: u8, steps: &[Step], compress: bool) -> String {
    let mut counts = Vec::new();
    for step in steps {
        match *step {
            Step::Empty(run) => zig_zag_varint(-(run.min(i64::MAX as u64) as i64), &mut counts),
            Step::Count(count) => zig_zag_varint(count.min(i64::MAX as u64) as i64, &mut counts),
        }
    }
    let mut v2 = 0x1c84_9313_u32.to_be_bytes().to_vec();
    v2.extend_from_slice(&(counts.len() as u32).to_be_bytes());
    v2.extend_from_slice(&0_u32.to_be_bytes());
    v2.extend_from_slice(&u32::from(digits).to_be_bytes());
    v2.extend_from_slice(&1_u64.to_be_bytes());
    v2.extend_from_slice(&u64::MAX.to_be_bytes());
    v2.extend_from_slice(&1.0_f64.to_be_bytes());
    v2.extend_from_slice(&counts);
    let bytes = if compress {
        let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        deflated.write_all(&v2).unwrap();
        let deflated = deflated.finish().unwrap();
        let mut bytes = 0x1c84_9314_u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(deflated.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&deflated);
        bytes
    } else {
        v2
    };
    format!(
        "Tag=t,0.0,1.0,1.0,{}\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
