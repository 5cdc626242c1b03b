//! Signal names and numbers, as `--signal` accepts them and as messages show them.

use std::fmt;

/// Standard signals by name; the first entry for a number is the one shown.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// A signal that can serve as the restart signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl Default for Signal {
    fn default() -> Self {
        Self(libc::SIGHUP)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.0))
    }
}

/// The conventional name of a signal number: `SIGHUP`, `SIGRTMIN+3`, `SIGRTMAX-2`.
pub fn name(number: i32) -> String {
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == number) {
        format!("SIG{name}")
    } else if number == rtmin {
        "SIGRTMIN".to_owned()
    } else if number == rtmax {
        "SIGRTMAX".to_owned()
    } else if number > rtmin && number < rtmax {
        if number - rtmin <= rtmax - number {
            format!("SIGRTMIN+{}", number - rtmin)
        } else {
            format!("SIGRTMAX-{}", rtmax - number)
        }
    } else {
        format!("signal {number}")
    }
}

/// Parses a `--signal` value: a name with or without `SIG`, in any case (`HUP`, `sigusr2`),
/// `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n`, or a plain number. Rejects what cannot work as a
/// restart signal.
pub fn parse(text: &str) -> Result<Signal, String> {
    let number = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i32>()
            .map_err(|_| format!("{text} is not a signal number"))?
    } else {
        number_of_name(text).ok_or_else(|| format!("unknown signal name {text:?}"))?
    };
    restart_signal(number)
}

fn number_of_name(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |digits: &str| -> Option<i32> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    if bare == "RTMIN" {
        Some(rtmin)
    } else if bare == "RTMAX" {
        Some(rtmax)
    } else if let Some(n) = bare.strip_prefix("RTMIN+") {
        Some(rtmin + offset(n).filter(|n| *n <= rtmax - rtmin)?)
    } else if let Some(n) = bare.strip_prefix("RTMAX-") {
        Some(rtmax - offset(n).filter(|n| *n <= rtmax - rtmin)?)
    } else {
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| *n)
    }
}

fn restart_signal(number: i32) -> Result<Signal, String> {
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match number {
        0 => Err("0 is not a signal".to_owned()),
        libc::SIGKILL | libc::SIGSTOP => Err(format!(
            "{} cannot be caught, so it cannot be the restart signal",
            name(number)
        )),
        // Every child exit would look like a restart request.
        libc::SIGCHLD => Err("SIGCHLD cannot be the restart signal".to_owned()),
        n if n > rtmax => Err(format!("there is no signal {n} (the last is {rtmax})")),
        // Between the standard and the real-time signals: kept by the C library for its threads.
        n if n > libc::SIGSYS && n < rtmin => {
            Err(format!("signal {n} is reserved by the C library"))
        }
        n => Ok(Signal(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> i32 {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .number()
    }

    #[test]
    fn standard_names_in_any_case() {
        assert_eq!(number("HUP"), libc::SIGHUP);
        assert_eq!(number("SIGHUP"), libc::SIGHUP);
        assert_eq!(number("usr2"), libc::SIGUSR2);
        assert_eq!(number("SIGUSR2"), libc::SIGUSR2);
        assert_eq!(number("sigUsr1"), libc::SIGUSR1);
        assert_eq!(number("TERM"), libc::SIGTERM);
        assert_eq!(number("IOT"), libc::SIGABRT);
    }

    #[test]
    fn real_time_forms() {
        let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(number("RTMIN"), rtmin);
        assert_eq!(number("SIGRTMIN"), rtmin);
        assert_eq!(number("RTMIN+3"), rtmin + 3);
        assert_eq!(number("rtmin+0"), rtmin);
        assert_eq!(number("RTMAX"), rtmax);
        assert_eq!(number("SIGRTMAX-2"), rtmax - 2);
        assert_eq!(number(&format!("RTMIN+{}", rtmax - rtmin)), rtmax);
    }

    #[test]
    fn numbers() {
        assert_eq!(number("1"), libc::SIGHUP);
        assert_eq!(number("40"), 40);
        assert_eq!(number(&libc::SIGRTMAX().to_string()), libc::SIGRTMAX());
    }

    #[test]
    fn rejects() {
        let rtmax = libc::SIGRTMAX();
        for text in [
            "",
            "0",
            "9",
            "KILL",
            "SIGKILL",
            "19",
            "STOP",
            "sigstop",
            "CHLD",
            "BOGUS",
            "SIG",
            "SIG1",
            "-1",
            "+1",
            " HUP",
            "1.0",
            "32",
            "99",
            "99999999999",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+",
            "RTMIN+x",
            "RTMIN++1",
            &(rtmax + 1).to_string(),
            &format!("RTMIN+{}", rtmax),
            &format!("RTMAX-{}", rtmax),
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn names_for_messages() {
        let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
        assert_eq!(name(libc::SIGABRT), "SIGABRT");
        assert_eq!(name(rtmin), "SIGRTMIN");
        assert_eq!(name(rtmin + 1), "SIGRTMIN+1");
        assert_eq!(name(rtmax - 1), "SIGRTMAX-1");
        assert_eq!(name(rtmax), "SIGRTMAX");
        assert_eq!(name(0), "signal 0");
        assert_eq!(Signal::default().to_string(), "SIGHUP");
    }
}
