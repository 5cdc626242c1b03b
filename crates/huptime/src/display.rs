//! How commands and durations are shown to people.

use std::ffi::OsString;
use std::time::Duration;

/// The command words as a shell would need them typed: `python3 'my server.py'`.
pub fn command_line(words: &[OsString]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| shell_quote(&word.to_string_lossy()))
        .collect();
    quoted.join(" ")
}

/// Quotes one word for a POSIX shell, leaving plain words alone.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A span of whole seconds in the compact form `2d03h04m05s`, `1h02m03s`, `4m05s`, `5s`.
pub fn span(seconds: u64) -> String {
    let (days, hours) = (seconds / 86_400, seconds / 3600 % 24);
    let (minutes, secs) = (seconds / 60 % 60, seconds % 60);
    if days > 0 {
        format!("{days}d{hours:02}h{minutes:02}m{secs:02}s")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m{secs:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// A configured timeout as the user would have written it: `120s`, `1.5s`.
pub fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("server.py"), "server.py");
        assert_eq!(shell_quote("--bind=127.0.0.1:80"), "--bind=127.0.0.1:80");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        let words: Vec<OsString> = vec!["python3".into(), "my app.py".into()];
        assert_eq!(command_line(&words), "python3 'my app.py'");
    }

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(65), "1m05s");
        assert_eq!(span(3723), "1h02m03s");
        assert_eq!(span(2 * 86_400 + 3 * 3600 + 4 * 60 + 5), "2d03h04m05s");
    }

    #[test]
    fn timeouts() {
        assert_eq!(seconds(Duration::from_secs(120)), "120s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_millis(100)), "0.1s");
    }
}
