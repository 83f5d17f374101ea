//! How a spooled record is laid out in a segment file, and how a segment is read back after a
//! crash.
//!
//! A frame is `MAGIC (4) | length (4, LE) | CRC32C of the payload (4, LE) | payload`. The magic
//! lets a reader find the next frame after a damaged one whose length cannot be trusted; the
//! checksum tells a whole record from a damaged one. A frame cut off by a crash (a torn tail) is
//! told apart from damage in the middle by being the last thing in the file.

/// The first bytes of every frame.
pub(super) const MAGIC: [u8; 4] = *b"HSP1";
/// Magic, length and checksum.
pub(super) const HEADER_LEN: usize = 12;
/// The longest payload a frame may claim: a record is at most a Kafka message plus its topic and
/// headers; anything longer is a damaged length.
pub(super) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// CRC-32C (Castagnoli), the checksum Kafka and ext4 use: reflected, polynomial 0x82F63B78.
pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
            *slot = crc;
        }
        table
    });
    !bytes.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// `payload` framed.
pub(super) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a scan of a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// `(offset of the frame, payload)` of every whole record, in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// `(offset, length)` of every damaged stretch in the middle of the file: kept aside.
    pub damaged: Vec<(u64, u64)>,
    /// Where a frame cut off by the end of the file starts (the file is truncated there).
    pub torn_at: Option<u64>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Reads every frame of `bytes`. Never fails: what is not a whole record is either a torn tail
/// or damage, and scanning resumes at the next magic after damage.
pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    let mut damage_from: Option<usize> = None;
    let close_damage = |scan: &mut Scan, from: &mut Option<usize>, to: usize| {
        if let Some(start) = from.take() {
            scan.damaged.push((start as u64, (to - start) as u64));
        }
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER_LEN {
            if rest.len() >= 4 && rest[..4] != MAGIC {
                damage_from.get_or_insert(at);
                close_damage(&mut scan, &mut damage_from, bytes.len());
            } else {
                close_damage(&mut scan, &mut damage_from, at);
                scan.torn_at = Some(at as u64);
            }
            break;
        }
        if rest[..4] != MAGIC {
            damage_from.get_or_insert(at);
            at += next_magic(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        let len = u32_at(rest, 4) as usize;
        let crc = u32_at(rest, 8);
        if len > MAX_PAYLOAD {
            damage_from.get_or_insert(at);
            at += next_magic(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        if rest.len() < HEADER_LEN + len {
            // Cut off by the end of the file — unless another frame starts inside it, in which
            // case its length was damaged.
            match next_magic(&rest[1..]) {
                Some(i) => {
                    damage_from.get_or_insert(at);
                    at += i + 1;
                    continue;
                }
                // The rest of the file is a whole payload whose length field lies: damage (a
                // flipped bit), not a write cut off by a crash.
                None if crc32c(&rest[HEADER_LEN..]) == crc => {
                    damage_from.get_or_insert(at);
                    break;
                }
                None => {
                    close_damage(&mut scan, &mut damage_from, at);
                    scan.torn_at = Some(at as u64);
                    break;
                }
            }
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        if crc32c(payload) != crc {
            damage_from.get_or_insert(at);
            // The length may be right (a flipped payload byte): the next frame is right after.
            // If it is not there, look for the next magic.
            let after = at + HEADER_LEN + len;
            at = if bytes.get(after..after + 4) == Some(&MAGIC[..]) || after == bytes.len() {
                after
            } else {
                at + 1 + next_magic(&rest[1..]).unwrap_or(rest.len() - 1)
            };
            continue;
        }
        close_damage(&mut scan, &mut damage_from, at);
        scan.records.push((at as u64, payload.to_vec()));
        at += HEADER_LEN + len;
    }
    close_damage(&mut scan, &mut damage_from, bytes.len());
    scan
}

fn next_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    #[test]
    fn crc32c_matches_the_known_answers() {
        // RFC 3720 (iSCSI) B.4 and the common check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn whole_frames_are_read_back_in_order() {
        let bytes = framed(&[b"one", b"", b"three"]);
        let scan = scan(&bytes);
        let payloads: Vec<&[u8]> = scan.records.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [&b"one"[..], b"", b"three"]);
        assert_eq!(scan.damaged, []);
        assert_eq!(scan.torn_at, None);
    }

    #[test]
    fn a_frame_cut_off_at_any_byte_is_a_torn_tail_and_the_rest_is_kept() {
        let whole = framed(&[b"first", b"second record"]);
        let first_len = HEADER_LEN + 5;
        for cut in first_len + 1..whole.len() {
            let scan = scan(&whole[..cut]);
            assert_eq!(scan.records.len(), 1, "cut at {cut}");
            assert_eq!(scan.torn_at, Some(first_len as u64), "cut at {cut}");
            assert_eq!(scan.damaged, [], "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_costs_only_its_record() {
        let whole = framed(&[b"first", b"second", b"third"]);
        let second_at = HEADER_LEN + 5;
        for flip in second_at..second_at + HEADER_LEN + 6 {
            let mut damaged = whole.clone();
            damaged[flip] ^= 0x01;
            let scan = scan(&damaged);
            let payloads: Vec<&[u8]> = scan.records.iter().map(|(_, p)| p.as_slice()).collect();
            assert_eq!(payloads, [&b"first"[..], b"third"], "flip at {flip}");
            assert_eq!(scan.damaged.len(), 1, "flip at {flip}");
            assert_eq!(scan.damaged[0].0, second_at as u64, "flip at {flip}");
            assert_eq!(scan.torn_at, None, "flip at {flip}");
        }
    }

    #[test]
    fn a_flipped_length_bit_in_the_last_record_is_damage_not_a_torn_tail() {
        let whole = framed(&[b"first", b"second record"]);
        let last_at = HEADER_LEN + 5;
        for bit in 0..8 {
            let mut damaged = whole.clone();
            damaged[last_at + 4] ^= 1 << bit;
            let scan = scan(&damaged);
            if damaged[last_at + 4] < whole[last_at + 4] {
                continue; // a shorter length fails the checksum: damage either way
            }
            assert_eq!(scan.records.len(), 1, "bit {bit}");
            assert_eq!(scan.torn_at, None, "bit {bit}");
            assert_eq!(
                scan.damaged,
                [(last_at as u64, (whole.len() - last_at) as u64)],
                "bit {bit}"
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_never_yields_a_record() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            assert!(scan(&bytes).records.is_empty());
        }
    }
}
