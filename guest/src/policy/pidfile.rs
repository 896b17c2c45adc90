//! The PID file: where it lives, what it holds, what counts as garbage.

use std::fmt;

use crate::host::{FileKind, FileStat};
use crate::wit::bengal::pid_manager::types::{Error, Pid};

/// Bengal's PID file name, in the project root.
pub const FILE_NAME: &str = ".bengal.pid";

/// A PID file is a few digits: anything longer is not one, and is read no
/// further than this many bytes (plus one, to tell that it is longer).
pub const MAX_BYTES: usize = 64;

/// The largest PID any supported kernel hands out (Linux's `PID_MAX_LIMIT`,
/// 2^22, the ceiling of `/proc/sys/kernel/pid_max`; macOS and the BSDs stop
/// at 99999).
pub const PID_MAX: u64 = 4_194_304;

/// `<root>/.bengal.pid`.
pub fn path_in(root: &str) -> String {
    match root {
        "" => FILE_NAME.to_owned(),
        r if r.ends_with('/') => format!("{r}{FILE_NAME}"),
        r => format!("{r}/{FILE_NAME}"),
    }
}

/// The sibling lock file that serialises every pidman claim on `pid_file`.
pub fn lock_path(pid_file: &str) -> String {
    format!("{pid_file}.lock")
}

/// The temporary file a writer with PID `writer` prepares `pid_file` in:
/// `.<name>.<writer>.<nonce>.tmp` beside it. The PID tells a sweeper whether
/// the writer still runs; the random nonce keeps two writers of one process
/// (two threads, two plugin instances) apart.
pub fn temp_path(pid_file: &str, writer: Pid, nonce: u64) -> String {
    match pid_file.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.{writer}.{nonce:016x}.tmp"),
        None => format!(".{pid_file}.{writer}.{nonce:016x}.tmp"),
    }
}

/// The writer PID in a directory entry that is one of `pid_file`'s
/// temporary files (`.<name>.<writer>.<nonce>.tmp`, or the older
/// `.<name>.<writer>.tmp`).
pub fn temp_writer(pid_file: &str, entry: &str) -> Option<Pid> {
    let name = pid_file.rsplit_once('/').map_or(pid_file, |(_, name)| name);
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let digits = match rest.split_once('.') {
        Some((digits, nonce))
            if !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            digits
        }
        Some(_) => return None,
        None => rest,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Refuse what cannot be a PID file without opening it: a symlink (never
/// followed), a directory, a FIFO, socket or device node (opening one may
/// block forever or have side effects), and a regular file over
/// [`MAX_BYTES`] (someone gave the wrong path). None of them is removed.
pub fn refuse_unless_pid_file(path: &str, stat: &FileStat) -> Result<(), Error> {
    let not = |what: &str| Error::Invalid(format!("{path} is {what}, not a PID file: left alone"));
    match stat.kind {
        FileKind::Regular if stat.size > MAX_BYTES as u64 => Err(not(&format!(
            "a file of {} bytes (a PID file has at most {MAX_BYTES})",
            stat.size
        ))),
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(not("a directory")),
        FileKind::Symlink => Err(Error::Untrusted(format!(
            "{path} is a symlink; pidman never follows one (remove it by hand)"
        ))),
        FileKind::Special => Err(not("a FIFO, socket or device node")),
    }
}

/// What a PID file holds: the bare decimal PID, which Bengal's Python
/// `int()` parses.
pub fn contents(pid: Pid) -> String {
    pid.to_string()
}

/// Why a PID file's contents are not a PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    /// Nothing but whitespace.
    Empty,
    /// More than [`MAX_BYTES`] bytes.
    Oversized,
    /// Not UTF-8.
    NotUtf8,
    /// Something other than ASCII digits (signs, hex, other scripts' digits).
    NotDigits,
    /// PID 0, which names no process.
    Zero,
    /// Larger than any PID ([`PID_MAX`]).
    OutOfRange,
}

impl fmt::Display for Garbage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Garbage::Empty => "it is empty",
            Garbage::Oversized => "it is longer than 64 bytes",
            Garbage::NotUtf8 => "it is not UTF-8 text",
            Garbage::NotDigits => "it is not a decimal number",
            Garbage::Zero => "it holds PID 0",
            Garbage::OutOfRange => "its number is larger than any PID",
        })
    }
}

/// Parse a PID file's bytes. Surrounding ASCII whitespace (so a trailing
/// newline) is accepted; the rest must be ASCII digits naming a PID in
/// `1..=PID_MAX`.
pub fn parse(bytes: &[u8]) -> Result<Pid, Garbage> {
    if bytes.len() > MAX_BYTES {
        return Err(Garbage::Oversized);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Garbage::NotUtf8)?;
    let digits = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if digits.is_empty() {
        return Err(Garbage::Empty);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Garbage::NotDigits);
    }
    // At most 64 digits: fold with saturation instead of overflowing.
    let value = digits.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    match value {
        0 => Err(Garbage::Zero),
        v if v > PID_MAX => Err(Garbage::OutOfRange),
        v => Ok(v as Pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_in_the_root() {
        assert_eq!(path_in("/srv/site"), "/srv/site/.bengal.pid");
        assert_eq!(path_in("/srv/site/"), "/srv/site/.bengal.pid");
        assert_eq!(
            lock_path("/srv/site/.bengal.pid"),
            "/srv/site/.bengal.pid.lock"
        );
    }

    #[test]
    fn accepts_digits_with_surrounding_whitespace() {
        assert_eq!(parse(b"123"), Ok(123));
        assert_eq!(parse(b"123\n"), Ok(123));
        assert_eq!(parse(b"  42 \r\n"), Ok(42));
        assert_eq!(parse(b"\t7\n\n"), Ok(7));
        assert_eq!(parse(b"4194304"), Ok(4_194_304));
        assert_eq!(parse(b"000123"), Ok(123));
    }

    #[test]
    fn rejects_every_kind_of_garbage() {
        let cases: &[(&[u8], Garbage)] = &[
            (b"", Garbage::Empty),
            (b" \n\t", Garbage::Empty),
            (b"+5", Garbage::NotDigits),
            (b"-5", Garbage::NotDigits),
            (b"0x1F", Garbage::NotDigits),
            (b"12 34", Garbage::NotDigits),
            (b"1.5", Garbage::NotDigits),
            ("\u{ff11}\u{ff12}\u{ff13}".as_bytes(), Garbage::NotDigits),
            ("\u{0661}\u{0662}".as_bytes(), Garbage::NotDigits),
            (b"\xff\xfe12", Garbage::NotUtf8),
            (b"0", Garbage::Zero),
            (b"0000", Garbage::Zero),
            (b"4194305", Garbage::OutOfRange),
            (b"4294967296", Garbage::OutOfRange),
            (b"99999999999999999999999999999999", Garbage::OutOfRange),
            (&[b'1'; 65], Garbage::Oversized),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn temporary_files_name_their_writer() {
        let file = "/srv/site/.bengal.pid";
        assert_eq!(
            temp_path(file, 42, 0xabc),
            "/srv/site/..bengal.pid.42.0000000000000abc.tmp"
        );
        assert_ne!(temp_path(file, 42, 1), temp_path(file, 42, 2));
        assert_eq!(
            temp_writer(file, "..bengal.pid.42.0000000000000abc.tmp"),
            Some(42)
        );
        assert_eq!(temp_writer(file, "..bengal.pid.42.tmp"), Some(42));
        for other in [
            ".bengal.pid",
            "..bengal.pid..tmp",
            "..bengal.pid.4x.tmp",
            "..bengal.pid.42.xyz.tmp",
            "..bengal.pid.42..tmp",
            ".x.42.tmp",
            "..bengal.pid.42",
        ] {
            assert_eq!(temp_writer(file, other), None, "{other}");
        }
    }

    #[test]
    fn contents_round_trip() {
        for pid in [1, 42, 65_535, 4_194_304] {
            assert_eq!(parse(contents(pid).as_bytes()), Ok(pid));
        }
    }
}
